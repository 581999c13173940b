package region

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestParseProcAddr(t *testing.T) {
	tests := []struct{ in, want string }{
		{"0100007F:1F90", "127.0.0.1:8080"},
		{"0201007F:0050", "127.0.1.2:80"},
		{"00000000000000000000000001000000:0016", "[::1]:22"},
		{"0000000000000000FFFF00000100007F:01BB", "[::ffff:127.0.0.1]:443"},
	}
	for _, tt := range tests {
		got, err := parseProcAddr(tt.in)
		if err != nil || got.String() != tt.want {
			t.Errorf("parseProcAddr(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "0100007F", "zz00007F:0050", "0100007F:zz"} {
		if _, err := parseProcAddr(bad); err == nil {
			t.Errorf("parseProcAddr(%q) succeeded", bad)
		}
	}
}

func TestSCRAMVerifier(t *testing.T) {
	pw := newPassword()
	if len(pw) != 32 || strings.Trim(pw, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") != "" {
		t.Fatalf("password %d chars outside [A-Za-z0-9]", len(pw))
	}
	if newPassword() == pw {
		t.Fatal("two passwords are equal")
	}
	v, err := scramVerifier(pw)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(v, pw) {
		t.Fatal("verifier holds the plaintext")
	}
	// SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>, recomputed independently.
	head, keys, ok := strings.Cut(strings.TrimPrefix(v, "SCRAM-SHA-256$"), "$")
	iterS, saltB, ok2 := strings.Cut(head, ":")
	storedB, serverB, ok3 := strings.Cut(keys, ":")
	if !strings.HasPrefix(v, "SCRAM-SHA-256$") || !ok || !ok2 || !ok3 {
		t.Fatalf("verifier shape %q", v)
	}
	iter, _ := strconv.Atoi(iterS)
	salt, _ := base64.StdEncoding.DecodeString(saltB)
	salted, _ := pbkdf2.Key(sha256.New, pw, salt, iter, 32)
	m := hmac.New(sha256.New, salted)
	m.Write([]byte("Client Key"))
	stored := sha256.Sum256(m.Sum(nil))
	if got := base64.StdEncoding.EncodeToString(stored[:]); got != storedB {
		t.Errorf("StoredKey = %s, want %s", storedB, got)
	}
	m = hmac.New(sha256.New, salted)
	m.Write([]byte("Server Key"))
	if got := base64.StdEncoding.EncodeToString(m.Sum(nil)); got != serverB {
		t.Errorf("ServerKey = %s, want %s", serverB, got)
	}
}

func TestDBSecretNeverEchoesValue(t *testing.T) {
	_, err := parseDBSecret(`not json with hunter2`)
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("err = %v", err)
	}
	if _, err := parseDBSecret(`{"username":"a"}`); err == nil {
		t.Fatal("a secret without password parsed")
	}
}

// TestPeerGuardIdentifiesProcessGroups connects to a guarded listener from
// two real processes in different process groups: only the allowed group gets in.
func TestPeerGuardIdentifiesProcessGroups(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is required")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	allowed := make(chan int, 1)
	var allowGroup atomic.Int64 // set after the accept loop starts
	g := &peerGuard{Listener: ln, log: slog.New(slog.DiscardHandler), allow: func(pid int) error {
		pg, err := pgidOf(pid)
		if err != nil {
			return err
		}
		if int64(pg) != allowGroup.Load() {
			return os.ErrPermission
		}
		allowed <- pid
		return nil
	}}
	t.Cleanup(func() { g.Close() })
	go func() {
		for {
			c, err := g.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"))
			c.Close()
		}
	}()
	curl := func() (*exec.Cmd, *strings.Builder) {
		c := exec.Command("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://"+ln.Addr().String()+"/")
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		var out strings.Builder
		c.Stdout = &out
		return c, &out
	}
	// The allowed group is led by a sleeper; the first curl joins it, as a
	// process an instance spawns would.
	c1, out1 := curl()
	leader := exec.Command("sleep", "30")
	leader.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := leader.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = leader.Process.Kill(); _ = leader.Wait() })
	allowGroup.Store(int64(leader.Process.Pid))
	c1.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pgid: leader.Process.Pid}
	if err := c1.Run(); err != nil {
		t.Fatal(err)
	}
	if out1.String() != "200" {
		t.Fatalf("curl in the allowed group got %q, want 200", out1.String())
	}
	select {
	case pid := <-allowed:
		if pid == os.Getpid() {
			t.Fatal("the peer was attributed to the test process")
		}
	case <-time.After(time.Second):
		t.Fatal("allow was not called")
	}
	c2, out2 := curl() // its own group
	if err := c2.Run(); err != nil {
		t.Fatal(err)
	}
	if out2.String() != "403" {
		t.Fatalf("curl in another group got %q, want 403", out2.String())
	}
	// And a connection from this process is attributed to it, so refused.
	pids, err := PeerPIDsOfDial(t, ln.Addr().String())
	if err != nil || len(pids) != 1 || pids[0] != os.Getpid() {
		t.Fatalf("PeerPIDs of our own connection = %v, %v; want [%d]", pids, err, os.Getpid())
	}
}

// PeerPIDsOfDial dials addr from this process and resolves the connection's owner.
func PeerPIDsOfDial(t *testing.T, addr string) ([]int, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	local := c.LocalAddr().(*net.TCPAddr).AddrPort()
	remote := netip.MustParseAddrPort(addr)
	return PeerPIDs(local, remote)
}
