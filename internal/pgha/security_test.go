package pgha

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// asNobody runs a PostgreSQL client program as the OS user nobody, with no
// password in its environment or a passfile, and returns its output.
func asNobody(t *testing.T, prog string, args ...string) (string, error) {
	t.Helper()
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("look up nobody: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(DefaultBinDir, prog), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent", "PGCONNECT_TIMEOUT=5", "PGPASSFILE=/nonexistent"}
	cmd.Dir = "/"
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	return out.String(), err
}

// Issue 9, finding 1: any local account could copy the whole database with
// `pg_basebackup -U replicator -w`. Now a local user that is not the
// operator cannot replicate (with or without TLS, from any address), cannot
// log in as any role without its password, and cannot read the nodes'
// keys; the standby itself streams over TLS with its client certificate.
func TestLocalUserCannotReplicateOrLogIn(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runs clients as the OS user nobody: needs root (scripts/test runs as root)")
	}
	c := startPair(t, Config{AppDatabase: "courses"})
	bootstrapWithPassword(t, c, "courses", "courses_app")
	primary := c.Primary()
	host, port := primary.ListenAddr.String(), strconv.Itoa(primary.Port)

	// The standby streams, over TLS, as the replication role.
	ssl := queryString(t, c, primary.Name, "SELECT coalesce(string_agg(s.ssl::text || ' ' || r.usename, ','), '') FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)")
	if ssl != "true replicator" {
		t.Errorf("replication connections (ssl, user) = %q, want one over TLS as replicator", ssl)
	}

	dst := filepath.Join(testDir(t), "copy")
	if err := os.MkdirAll(dst, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dst, 0o777); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"prefer", "disable", "require"} {
		out, err := asNobody(t, "pg_basebackup", "-d", "host="+host+" port="+port+" user=replicator sslmode="+mode, "-w", "-D", dst, "-X", "none")
		if err == nil {
			t.Fatalf("nobody copied the database with pg_basebackup (sslmode=%s):\n%s", mode, out)
		}
		if !strings.Contains(out, "FATAL") && !strings.Contains(out, "certificate") {
			t.Errorf("pg_basebackup (sslmode=%s) failed, but not at authentication:\n%s", mode, out)
		}
	}
	if ents, _ := os.ReadDir(dst); len(ents) > 0 {
		t.Errorf("pg_basebackup wrote %d entries into %s", len(ents), dst)
	}
	// Through the unix socket (the operator's door): its directory is closed.
	if out, err := asNobody(t, "pg_basebackup", "-d", "host="+primary.SocketDir+" port="+port+" user=postgres", "-w", "-D", dst, "-X", "none"); err == nil {
		t.Fatalf("nobody replicated through the unix socket:\n%s", out)
	}
	for _, role := range []string{"postgres", "replicator", "courses_app"} {
		for _, db := range []string{"postgres", "courses"} {
			out, err := asNobody(t, "psql", "-w", "-X", "-d", "host="+host+" port="+port+" user="+role+" dbname="+db, "-c", "SELECT 1")
			if err == nil {
				t.Errorf("nobody logged in as %s to %s over TCP without a credential:\n%s", role, db, out)
			}
		}
	}
	if out, err := asNobody(t, "psql", "-w", "-X", "-d", "host="+primary.SocketDir+" port="+port+" user=postgres", "-c", "SELECT 1"); err == nil {
		t.Errorf("nobody logged in as postgres over the unix socket:\n%s", out)
	}
	// The nodes' TLS keys and data are the postgres user's alone.
	for _, n := range c.cfg.Nodes {
		for _, f := range []string{filepath.Join(tlsDir(n), replKeyFile), filepath.Join(tlsDir(n), serverKeyFile), filepath.Join(n.DataDir, "PG_VERSION")} {
			u, _ := user.Lookup("nobody")
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			cmd := exec.Command("/bin/cat", f)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
			if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "Permission denied") {
				t.Errorf("nobody reads %s: err %v, %s", f, err, out)
			}
		}
	}
	// The operator still gets in (peer authentication over the socket), and
	// the app role with its password over TCP.
	if v := queryString(t, c, primary.Name, "SELECT current_user"); v != "postgres" {
		t.Errorf("operator logs in as %q", v)
	}
}
