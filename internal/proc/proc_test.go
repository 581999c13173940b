package proc

import (
	"net"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"
)

func TestParseNetAddr(t *testing.T) {
	tests := []struct{ in, want string }{
		{"0100007F:1F90", "127.0.0.1:8080"},
		{"0201007F:0050", "127.0.1.2:80"},
		{"00000000000000000000000001000000:0016", "[::1]:22"},
		{"0000000000000000FFFF00000100007F:01BB", "[::ffff:127.0.0.1]:443"},
	}
	for _, tt := range tests {
		got, err := ParseNetAddr(tt.in)
		if err != nil || got.String() != tt.want {
			t.Errorf("ParseNetAddr(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "0100007F", "zz00007F:0050", "0100007F:zz"} {
		if _, err := ParseNetAddr(bad); err == nil {
			t.Errorf("ParseNetAddr(%q) succeeded", bad)
		}
	}
}

func TestParseStat(t *testing.T) {
	s, err := ParseStat([]byte("42 (a (weird) name) S 7 42 40 0 -1"))
	if err != nil || s.State != 'S' || s.PPID != 7 || s.PGID != 42 || s.Session != 40 {
		t.Fatalf("ParseStat = %+v, %v", s, err)
	}
	// utime 150 and stime 25 ticks: 1.75s.
	s, err = ParseStat([]byte("42 (app) R 1 42 42 0 -1 4194560 100 0 0 0 150 25 0 0 20 0 1"))
	if err != nil || s.CPU != 1750*time.Millisecond {
		t.Fatalf("ParseStat CPU = %v, %v; want 1.75s", s.CPU, err)
	}
	for _, bad := range []string{"", "1 (x)", "1 (x) S a b c"} {
		if _, err := ParseStat([]byte(bad)); err == nil {
			t.Errorf("ParseStat(%q) succeeded", bad)
		}
	}
}

// TestRealProcesses reads a child this test starts: its parent, group,
// environment, command line, descendants, and the socket it holds.
func TestRealProcesses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cmd := exec.Command("sleep", "30")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = []string{"HAVEN_PROBE=1"}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	s, err := ReadStat(pid)
	if err != nil || s.PPID != os.Getpid() || s.PGID != pid {
		t.Errorf("stat = %+v, %v; want parent %d, group %d", s, err, os.Getpid(), pid)
	}
	if env, err := Environ(pid); err != nil || !slices.Equal(env, []string{"HAVEN_PROBE=1"}) {
		t.Errorf("environ = %q, %v", env, err)
	}
	if cl, err := Cmdline(pid); err != nil || !slices.Equal(cl, []string{"sleep", "30"}) {
		t.Errorf("cmdline = %q, %v", cl, err)
	}
	if !slices.Contains(Descendants(os.Getpid()), pid) || !slices.Contains(Group(pid), pid) || !Alive(pid) || IsZombie(pid) {
		t.Error("the child is not a live descendant in its own group")
	}
	if c, err := Comm(pid); err != nil || c != "sleep" {
		t.Errorf("comm = %q, %v", c, err)
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pids, err := SocketHolders(c.LocalAddr().(*net.TCPAddr).AddrPort(), c.RemoteAddr().(*net.TCPAddr).AddrPort())
	if err != nil || !slices.Equal(pids, []int{os.Getpid()}) {
		t.Errorf("holders of our connection = %v, %v; want [%d]", pids, err, os.Getpid())
	}
}

func TestParseStatus(t *testing.T) {
	in := "Name:\tcourses\nUmask:\t0022\nUid:\t1900000123\t1900000123\t1900000123\t1900000123\nGid:\t1900000123\t1900000123\t1900000123\t1900000123\n" +
		"CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t0\n"
	s, err := ParseStatus([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if s.UIDs[0] != 1900000123 || s.GIDs[3] != 1900000123 || s.CapEff != 0 || s.CapBnd != 0x1ffffffffff || !s.NoNewPrivs {
		t.Errorf("ParseStatus = %+v", s)
	}
	if _, err := ParseStatus([]byte("Name:\tx\nUid:\t0\t0\t0\t0\n")); err == nil {
		t.Error("a status without capabilities parsed")
	}
	self, err := ReadStatus(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if self.UIDs[1] != os.Geteuid() {
		t.Errorf("own effective uid %d, want %d", self.UIDs[1], os.Geteuid())
	}
}
