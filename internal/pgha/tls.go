package pgha

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Certificates issues the TLS material of streaming replication; the
// region's CA (*ca.CA) implements it.
//
// Replication authenticates with client certificates rather than a
// password: a password would have to sit in primary_conninfo, which
// PostgreSQL keeps in postgresql.auto.conf in plaintext, or in a passfile,
// plaintext too. A certificate's key sits in a file as well, but it is
// issued per node and per start, never leaves the node's tls directory
// (0700, the postgres OS user, who can read the whole database anyway),
// is not a secret any other service knows, and comes with server
// authentication: the standby verifies it streams from a real node.
type Certificates interface {
	// CertPEM is the CA certificate, which both ends trust.
	CertPEM() []byte
	// IssueServer issues a server certificate for names and ips.
	IssueServer(names []string, ips []net.IP, ttl time.Duration) (tls.Certificate, error)
	// IssueClient issues a client certificate whose common name is commonName.
	IssueClient(commonName string, ttl time.Duration) (tls.Certificate, error)
}

// Files in a node's tls directory (tlsDir).
const (
	rootCertFile   = "root.crt"        // the CA: verifies the other node
	serverCertFile = "server.crt"      // the node's server certificate
	serverKeyFile  = "server.key"      // its key
	replCertFile   = "replication.crt" // the replication role's client certificate (used as a standby)
	replKeyFile    = "replication.key" // its key
)

// TLSKeyFiles are the private keys a node keeps at rest by design (its
// server key and its replication client key, 0600, the postgres user's),
// for a plaintext scan to name and skip.
func TLSKeyFiles(n Node) []string {
	d := tlsDir(n)
	return []string{filepath.Join(d, serverKeyFile), filepath.Join(d, replKeyFile)}
}

// certTTL is the lifetime of a node's certificates; they are issued
// again at every start of the server.
const certTTL = 365 * 24 * time.Hour

// tlsDir is where a node keeps its TLS material: beside its data
// directory, so base backups and pg_rewind never copy one node's key to
// the other.
func tlsDir(n Node) string { return filepath.Join(filepath.Dir(filepath.Clean(n.DataDir)), "tls") }

// writeTLS issues the node's server certificate (its name and address) and
// a replication client certificate, and writes them with the CA into its
// tls directory, all owned by the postgres OS user, keys 0600.
func (in *instance) writeTLS() error {
	if in.certs == nil {
		return errors.New("write TLS files: no certificate authority configured")
	}
	d := tlsDir(in.node)
	if err := os.MkdirAll(d, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", d, err)
	}
	if err := os.Chmod(d, 0o700); err != nil {
		return fmt.Errorf("chmod %s: %w", d, err)
	}
	if err := in.chown(d); err != nil {
		return err
	}
	srv, err := in.certs.IssueServer([]string{in.node.Name}, []net.IP{in.node.ListenAddr.AsSlice()}, certTTL)
	if err != nil {
		return fmt.Errorf("issue server certificate of %s: %w", in.node.Name, err)
	}
	cli, err := in.certs.IssueClient(ReplicationRole, certTTL)
	if err != nil {
		return fmt.Errorf("issue replication certificate of %s: %w", in.node.Name, err)
	}
	files := map[string][]byte{rootCertFile: in.certs.CertPEM()}
	for _, c := range []struct {
		cert     tls.Certificate
		crt, key string
	}{{srv, serverCertFile, serverKeyFile}, {cli, replCertFile, replKeyFile}} {
		crt, key, err := certPEM(c.cert)
		if err != nil {
			return fmt.Errorf("encode %s: %w", c.crt, err)
		}
		files[c.crt], files[c.key] = crt, key
	}
	for name, b := range files {
		p := filepath.Join(d, name)
		tmp := p + ".tmp"
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
		if err := in.chown(tmp); err != nil {
			return err
		}
		if err := os.Rename(tmp, p); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
	}
	return nil
}

// certPEM encodes a certificate's leaf (the CA is root.crt) and its key.
func certPEM(c tls.Certificate) (crt, key []byte, err error) {
	if len(c.Certificate) == 0 {
		return nil, nil, errors.New("empty certificate")
	}
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return nil, nil, err
	}
	crt = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]})
	key = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	return crt, key, nil
}
