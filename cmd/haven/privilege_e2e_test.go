package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/proc"
	"github.com/haven-platform/haven/internal/testkit"
)

// asUser runs argv as the OS user name, no supplementary groups, a bare
// environment, and returns its combined output.
func asUser(t *testing.T, ctx context.Context, name string, argv ...string) (string, error) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("look up %s: %v", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent", "PGPASSFILE=/nonexistent", "PGCONNECT_TIMEOUT=5"}
	cmd.Dir = "/"
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	return out.String(), err
}

// regionFiles lists every file and directory of the region on disk: the
// state dir and the postgres user's tree it links to.
func regionFiles(t *testing.T, stateDir string) []string {
	t.Helper()
	roots := []string{stateDir}
	if target, err := filepath.EvalSymlinks(filepath.Join(stateDir, "pg")); err == nil && !strings.HasPrefix(target, stateDir+"/") {
		roots = append(roots, target)
	}
	var files []string
	for _, root := range roots {
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && p != root && d.Type()&fs.ModeSocket == 0 {
				files = append(files, p)
			}
			return nil
		})
	}
	return files
}

// TestLeastPrivilegeEndToEnd is issue 9's acceptance for a running region:
// instances run unprivileged and reach neither the daemon's socket nor the
// secrets store's key; the database nodes (the postgres user) cannot read
// the store either; a local user that is not the operator cannot
// replicate, cannot log in to any role without its credential and cannot
// read anything in the state dir; no pg_hba.conf line trusts.
//
// It runs in both networks: in a VPC (the default as root), where security
// groups also keep the host and the instances off the database nodes, and
// on the loopback fallback, where the nodes' authentication alone must
// refuse a local user.
func TestLeastPrivilegeEndToEnd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("checks the privileges a root daemon drops: needs root (scripts/test runs as root)")
	}
	for _, network := range []string{"vpc", "loopback"} {
		t.Run(network, func(t *testing.T) { leastPrivilege(t, network) })
	}
}

func leastPrivilege(t *testing.T, network string) {
	ctx := testCtx(t, 10*time.Minute)
	// Outside /tmp: the instances' private /tmp would hide the state dir
	// there, and this test wants to see the permissions refuse.
	r := testkit.NewSpec(t, testkit.Options{MultiAZ: true, Students: 20, Courses: 3, Dir: "/run",
		Env: []string{"HAVEN_NETWORK=" + network}})
	r.Up(ctx)
	st := r.StatusJSON(ctx)
	if st.Network.Mode != network {
		t.Fatalf("network mode %q, want %q", st.Network.Mode, network)
	}
	key := filepath.Join(r.StateDir, "secrets", "root.key")
	store := filepath.Join(r.StateDir, "secrets", "secrets.json")

	// Instances: not root, no capability, no_new_privs; the daemon's socket
	// (through the real client) and the store's key are out of reach, from
	// the instance itself.
	n := 0
	for _, in := range st.Instances {
		if in.State != "in-service" || in.PID == 0 {
			continue
		}
		n++
		s, err := proc.ReadStatus(in.PID)
		if err != nil {
			t.Fatalf("status of instance %s: %v", in.ID, err)
		}
		if s.UIDs[0] == 0 || s.UIDs[1] == 0 || s.CapEff != 0 || s.CapPrm != 0 || s.CapBnd != 0 || !s.NoNewPrivs {
			t.Errorf("instance %s: uids %v CapEff %x CapPrm %x CapBnd %x NoNewPrivs %v; want not root, no capability, no_new_privs",
				in.ID, s.UIDs, s.CapEff, s.CapPrm, s.CapBnd, s.NoNewPrivs)
		}
		res, err := r.Client.RunOnInstance(ctx, in.ID, api.RunRequest{Argv: []string{filepath.Join(r.Bin, "haven"), "status", "--state-dir", r.StateDir}})
		if err != nil {
			t.Fatal(err)
		}
		if res.ExitCode == 0 || !strings.Contains(res.Stderr, "permission denied") {
			t.Errorf("instance %s ran `haven status` against the daemon: exit %d\n%s%s", in.ID, res.ExitCode, res.Stdout, res.Stderr)
		}
		for _, f := range []string{key, store} {
			res, err := r.Client.RunOnInstance(ctx, in.ID, api.RunRequest{Argv: []string{"/bin/cat", f}})
			if err != nil {
				t.Fatal(err)
			}
			if res.ExitCode == 0 || !strings.Contains(res.Stderr, "Permission denied") {
				t.Errorf("instance %s reads %s: exit %d %s", in.ID, f, res.ExitCode, res.Stderr)
			}
		}
	}
	if n == 0 {
		t.Fatal("no instance in service to check")
	}

	// Database nodes run as postgres, which cannot read the store nor reach the daemon.
	pg, err := user.Lookup("postgres")
	if err != nil {
		t.Fatal(err)
	}
	for _, node := range st.Database.Nodes {
		if s, err := proc.ReadStatus(node.PID); err != nil || strconv.Itoa(s.UIDs[1]) != pg.Uid {
			t.Errorf("database node %s (pid %d) runs as %v, want postgres (%s): %v", node.Name, node.PID, s.UIDs, pg.Uid, err)
		}
	}
	for _, f := range []string{key, store, filepath.Join(r.StateDir, "secrets", "audit.log"), filepath.Join(r.StateDir, "ca", "ca-key.pem")} {
		if out, err := asUser(t, ctx, "postgres", "/bin/cat", f); err == nil || !strings.Contains(out, "Permission denied") {
			t.Errorf("postgres reads %s: %v %s", f, err, out)
		}
	}
	if out, err := asUser(t, ctx, "postgres", filepath.Join(r.Bin, "haven"), "status", "--state-dir", r.StateDir); err == nil || !strings.Contains(out, "permission denied") {
		t.Errorf("postgres reaches the daemon: %v %s", err, out)
	}

	// A local user that is not the operator.
	primary := ""
	for _, node := range st.Database.Nodes {
		if node.Name == st.Database.Primary {
			primary = node.Address
		}
		b, err := os.ReadFile(filepath.Join(r.StateDir, "pg", "db", node.Name, "data", "pg_hba.conf"))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 0 && !strings.HasPrefix(f[0], "#") && f[len(f)-1] == "trust" {
				t.Errorf("%s pg_hba.conf trusts: %q", node.Name, line)
			}
		}
	}
	host, port, _ := net.SplitHostPort(primary)
	bin := "/usr/lib/postgresql/15/bin/"
	dst, err := os.MkdirTemp("", "haven-copy-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dst) })
	_ = os.Chmod(dst, 0o777)
	for _, mode := range []string{"prefer", "disable"} {
		if out, err := asUser(t, ctx, "nobody", bin+"pg_basebackup", "-d", "host="+host+" port="+port+" user=replicator sslmode="+mode, "-w", "-D", dst, "-X", "none"); err == nil {
			t.Errorf("nobody replicated the primary (sslmode=%s):\n%s", mode, out)
		}
	}
	epHost, epPort, _ := net.SplitHostPort(st.Endpoints.Database)
	for _, role := range []string{"postgres", "replicator", "test", "test_a", "test_b", "test_drill"} {
		for _, hp := range [][2]string{{host, port}, {epHost, epPort}} {
			if out, err := asUser(t, ctx, "nobody", bin+"psql", "-w", "-X", "-d", "host="+hp[0]+" port="+hp[1]+" user="+role+" dbname=test", "-c", "SELECT 1"); err == nil {
				t.Errorf("nobody logged in as %s through %s:%s without a credential:\n%s", role, hp[0], hp[1], out)
			}
		}
	}
	if out, err := asUser(t, ctx, "nobody", "/bin/ls", r.StateDir); err == nil {
		t.Errorf("nobody lists the state dir:\n%s", out)
	}
	files := regionFiles(t, r.StateDir)
	script := `for f in "$@"; do if [ -d "$f" ]; then ls "$f" >/dev/null 2>&1 && echo "listable $f"; else cat "$f" >/dev/null 2>&1 && echo "readable $f"; fi; done; true`
	out, err := asUser(t, ctx, "nobody", append([]string{"/bin/sh", "-c", script, "sh"}, files...)...)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out) != "" {
		t.Errorf("nobody reads in the state dir (of %d entries):\n%s", len(files), out)
	}
	if len(files) < 50 {
		t.Errorf("only %d entries in the state dir: the walk is broken", len(files))
	}

	// The leak scan still finds no plaintext credential: the nodes' TLS
	// keys are named as key material kept at rest, nothing else is new.
	scan, errOut, err := r.Haven(ctx, "audit", "secrets", "--json", "--repo", cleanRepo(t))
	var res SecretsScan
	if jerr := json.Unmarshal([]byte(scan), &res); jerr != nil || err != nil || len(res.Findings) != 0 {
		t.Errorf("audit secrets: err %v, findings %v\n%s", err, res.Findings, errOut)
	}
}
