package fleet

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/proc"
	"github.com/haven-platform/haven/internal/sandbox"
)

// probe tries what a compromised instance would: connect:PATH dials a unix
// socket, open:PATH reads a file. It prints one result a line.
func probe(args []string) {
	for _, a := range args {
		what, path, _ := strings.Cut(a, ":")
		var err error
		switch what {
		case "connect":
			var c net.Conn
			if c, err = net.Dial("unix", path); err == nil {
				c.Close()
			}
		case "open":
			var f *os.File
			if f, err = os.Open(path); err == nil {
				_, err = io.ReadAll(f)
				f.Close()
			}
		}
		fmt.Printf("%s %s: %v\n", what, path, err)
	}
}

// Issue 9, finding 2: instances ran as root with every capability. With a
// Sandbox, an instance (and a command run in it) has a uid that is not 0,
// no capability, no_new_privs, and cannot reach a root-only socket (the
// daemon's) or read a root-only key (the secrets store's), while it still
// serves on its own address and port.
func TestSandboxedInstancesAreUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("instances drop root's privileges: needs root (scripts/test runs as root)")
	}
	// A copy of the test binary the instance user may run (the build
	// directory is root's), and a state dir laid out as the region's.
	root, err := os.MkdirTemp("/run", "haven-fleet-sandbox-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	for _, d := range []string{root, filepath.Join(root, "bin"), filepath.Join(root, "state")} {
		must(t, os.MkdirAll(d, 0o755))
	}
	must(t, os.Chmod(root, 0o755))
	must(t, os.Chmod(filepath.Join(root, "state"), 0o711))
	exe, err := os.Executable()
	must(t, err)
	b, err := os.ReadFile(exe)
	must(t, err)
	app := filepath.Join(root, "bin", "app")
	must(t, os.WriteFile(app, b, 0o755))
	sock := filepath.Join(root, "state", "haven.sock")
	ln, err := net.Listen("unix", sock)
	must(t, err)
	t.Cleanup(func() { ln.Close() })
	must(t, os.Chmod(sock, 0o600))
	must(t, os.MkdirAll(filepath.Join(root, "state", "secrets"), 0o700))
	key := filepath.Join(root, "state", "secrets", "root.key")
	must(t, os.WriteFile(key, []byte("key"), 0o600))

	id, err := sandbox.RegionID(root)
	must(t, err)
	ev := &eventLog{}
	cfg := testConfig(t, ev)
	cfg.Template.Command = []string{app}
	cfg.Min, cfg.Desired = 1, 1
	cfg.Sandbox = &sandbox.Profile{UID: id, GID: id}
	f := startFleet(t, cfg)
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := filepath.Glob(filepath.Join(cfg.LogDir, "*.log"))
			for _, l := range logs[:min(len(logs), 2)] {
				b, _ := os.ReadFile(l)
				t.Logf("%s: %s", filepath.Base(l), b)
			}
		}
	})
	waitFor(t, "an instance in service", func() bool { return len(inService(f)) == 1 })
	in := inService(f)[0]
	// It serves: binding its port works unprivileged.
	waitFor(t, "the sandboxed instance to answer", func() bool {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(in.Address, fmt.Sprint(in.Port)), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	st, err := proc.ReadStatus(in.PID)
	must(t, err)
	if st.UIDs[0] == 0 || st.UIDs[1] == 0 || st.UIDs[1] != int(id) {
		t.Errorf("instance uids %v, want %d", st.UIDs, id)
	}
	if st.CapEff != 0 || st.CapPrm != 0 || st.CapBnd != 0 || st.CapAmb != 0 || st.CapInh != 0 {
		t.Errorf("instance capabilities eff %x prm %x bnd %x amb %x inh %x, want none", st.CapEff, st.CapPrm, st.CapBnd, st.CapAmb, st.CapInh)
	}
	if !st.NoNewPrivs {
		t.Error("instance NoNewPrivs is 0")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := f.Run(ctx, in.ID, []string{app, "connect:" + sock, "open:" + key}, []string{"HAVEN_FLEET_TEST_PROBE=1"}, 15*time.Second)
	must(t, err)
	for _, want := range []string{"connect " + sock + ": dial unix " + sock + ": connect: permission denied", "open " + key + ": open " + key + ": permission denied"} {
		if !strings.Contains(res.Stdout, want) {
			t.Errorf("probe in the instance: want %q in\n%s%s", want, res.Stdout, res.Stderr)
		}
	}
	// The same probe as root reaches both: the refusal is the sandbox's.
	out := captureProbe(t, sock, key)
	if strings.Contains(out, "permission denied") {
		t.Errorf("root's probe was refused too, the test proves nothing:\n%s", out)
	}
}

func captureProbe(t *testing.T, sock, key string) string {
	t.Helper()
	r, w, err := os.Pipe()
	must(t, err)
	old := os.Stdout
	os.Stdout = w
	probe([]string{"connect:" + sock, "open:" + key})
	os.Stdout = old
	w.Close()
	b, _ := io.ReadAll(r)
	return string(b)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
