package ca

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestLoadOrCreateFilesAndReload(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	c1, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatalf("LoadOrCreate: %v", err)
	}
	for name, want := range map[string]os.FileMode{CertFile: 0o644, KeyFile: 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("stat %s: %v", name, err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode = %o, want %o", name, got, want)
		}
	}
	c2, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	if !bytes.Equal(c1.CertPEM(), c2.CertPEM()) {
		t.Errorf("reloaded CA certificate differs from the created one")
	}
	// A certificate issued by the reloaded CA verifies against the first CA's pool.
	cert, err := c2.IssueServer([]string{"lb.local"}, nil, time.Hour)
	if err != nil {
		t.Fatalf("IssueServer: %v", err)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: "lb.local", Roots: c1.Pool()}); err != nil {
		t.Errorf("verify against original CA: %v", err)
	}
	if !c1.Certificate().IsCA {
		t.Errorf("root certificate is not a CA")
	}
}

func TestLoadOrCreateHalfState(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadOrCreate(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, KeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate(dir); err == nil {
		t.Fatalf("LoadOrCreate with a missing key: got nil error, want error")
	}
}

func TestLoadMismatchedKey(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	if _, err := LoadOrCreate(a); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate(b); err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(filepath.Join(b, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a, KeyFile), key, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate(a); err == nil {
		t.Fatalf("LoadOrCreate with another CA's key: got nil error, want error")
	}
}

func TestIssueServerVerifies(t *testing.T) {
	c, err := LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := c.IssueServer([]string{"localhost", "lb.haven.internal"}, []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}, time.Hour)
	if err != nil {
		t.Fatalf("IssueServer: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(c.CertPEM()) {
		t.Fatal("CertPEM does not parse")
	}
	tests := []struct {
		host    string
		wantErr bool
	}{
		{"localhost", false},
		{"lb.haven.internal", false},
		{"127.0.0.1", false},
		{"::1", false},
		{"other.example", true},
		{"10.0.0.1", true},
	}
	for _, tt := range tests {
		_, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: tt.host, Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		if gotErr := err != nil; gotErr != tt.wantErr {
			t.Errorf("verify %s: err = %v, want error %v", tt.host, err, tt.wantErr)
		}
	}
	if got, want := cert.Leaf.NotAfter.Sub(time.Now()), time.Hour; got > want || got < want-time.Minute {
		t.Errorf("leaf lifetime = %s, want about %s", got, want)
	}

	// A real TLS handshake with the issued certificate.
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatalf("GET over TLS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("status = %d, want 200", resp.StatusCode)
	}
}

func TestIssueServerRejectsEmpty(t *testing.T) {
	c, err := LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.IssueServer(nil, nil, time.Hour); err == nil {
		t.Errorf("IssueServer with no names: got nil error")
	}
	if _, err := c.IssueServer([]string{"x"}, nil, 0); err == nil {
		t.Errorf("IssueServer with ttl 0: got nil error")
	}
}

// A client certificate verifies as a client (not as a server) under the
// root, carrying its common name, and is refused by a server that wants a
// client certificate from another root.
func TestIssueClientVerifies(t *testing.T) {
	c, err := LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := c.IssueClient("replicator", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Leaf.Subject.CommonName != "replicator" {
		t.Errorf("common name = %q", cert.Leaf.Subject.CommonName)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: c.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("verify as client: %v", err)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: c.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("a client certificate verifies as a server certificate")
	}
	other, err := LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: other.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("verifies under another CA")
	}
	if _, err := c.IssueClient("", time.Hour); err == nil {
		t.Error("IssueClient with no name: nil error")
	}
}
