// Package pgha runs PostgreSQL 15 as a primary and a synchronous standby in two zones, with a failover controller that never loses an acknowledged commit.
package pgha

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strconv"
)

// DefaultBinDir is where the Debian postgresql-15 package installs the server binaries.
const DefaultBinDir = "/usr/lib/postgresql/15/bin"

// Node is the configuration of one PostgreSQL server in one zone.
type Node struct {
	// Name identifies the node, e.g. "db-a". It is also the node's
	// application_name in streaming replication. Required.
	Name string
	// Zone is the zone the node lives in, e.g. "a". Required.
	Zone string
	// DataDir is the PostgreSQL data directory. It is created (and chowned to
	// the postgres OS user) when missing. Required, absolute.
	DataDir string
	// ListenAddr is the only address the server listens on, e.g. 127.0.1.250. Required.
	ListenAddr netip.Addr
	// Port is the TCP port on ListenAddr. Required.
	Port int
	// SocketDir holds the unix socket the controller uses to connect as the
	// postgres superuser. It is chowned to postgres with mode 0700. Required, absolute.
	SocketDir string
	// LogFile receives the server's stderr log (appended). Defaults to
	// DataDir/../<Name>.log.
	LogFile string
	// Logger receives the controller's messages about this node. Defaults to
	// the cluster's logger.
	Logger *slog.Logger
}

// Validate reports the first invalid field of n.
func (n Node) Validate() error {
	switch {
	case n.Name == "":
		return errors.New("name: required")
	case n.Zone == "":
		return fmt.Errorf("%s.zone: required", n.Name)
	case !filepath.IsAbs(n.DataDir):
		return fmt.Errorf("%s.data_dir: must be an absolute path, got %q", n.Name, n.DataDir)
	case !n.ListenAddr.IsValid():
		return fmt.Errorf("%s.listen_addr: required", n.Name)
	case n.Port <= 0 || n.Port > 65535:
		return fmt.Errorf("%s.port: must be 1-65535, got %d", n.Name, n.Port)
	case !filepath.IsAbs(n.SocketDir):
		return fmt.Errorf("%s.socket_dir: must be an absolute path, got %q", n.Name, n.SocketDir)
	}
	return nil
}

// Addr is the node's TCP address, e.g. "127.0.1.250:5432".
func (n Node) Addr() string {
	return netip.AddrPortFrom(n.ListenAddr, uint16(n.Port)).String()
}

// AdminDSN is the connection string the controller uses: the postgres
// superuser over the unix socket in SocketDir.
func (n Node) AdminDSN() string {
	return "host=" + n.SocketDir + " port=" + strconv.Itoa(n.Port) + " user=postgres dbname=postgres sslmode=disable"
}

// DSN is a TCP connection string to this node for user and database.
func (n Node) DSN(user, database string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", n.ListenAddr, n.Port, user, database)
}

func (n Node) logFile() string {
	if n.LogFile != "" {
		return n.LogFile
	}
	return filepath.Join(filepath.Dir(filepath.Clean(n.DataDir)), n.Name+".log")
}
