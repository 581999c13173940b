package peercred

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// floodEnv makes this test binary a flooder: 20 goroutines open and close
// connections to the address in the variable until killed, printing how
// many they opened every 200 ms.
const floodEnv = "HAVEN_PEERCRED_FLOOD"

func TestMain(m *testing.M) {
	if addr := os.Getenv(floodEnv); addr != "" {
		var opened atomic.Int64
		for range 20 {
			go func() {
				for {
					if c, err := net.Dial("tcp", addr); err == nil {
						opened.Add(1)
						_, _ = io.Copy(io.Discard, c) // the 403, then EOF
						c.Close()
					}
				}
			}()
		}
		for range time.Tick(200 * time.Millisecond) {
			fmt.Println(opened.Load())
		}
	}
	os.Exit(m.Run())
}

// TestGuardFloodDoesNotDelayTheAllowedCaller is issue 9's flood, on the
// loopback fallback where callers are identified by /proc: user nobody
// floods a guarded listener from 20 goroutines (at nice 19) while the
// allowed caller (this process) makes requests; its 90th percentile may
// not grow by more than 100 ms. It holds on a loaded 2-core machine
// because the flood cannot queue the caller behind it: Accept hands every
// connection to an identification goroutine at once, the flooder's user
// gets 40 scans and then 20 a second (the rest are refused after one
// sock_diag lookup, no scan), at most 4 scans run at once, and the
// baseline is measured on the same machine just before and after.
func TestGuardFloodDoesNotDelayTheAllowedCaller(t *testing.T) {
	if testing.Short() {
		t.Skip("a load test of several seconds: skipped with -short (scripts/test runs it)")
	}
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root, to flood as another user (CI runs as root)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	var logMu sync.Mutex
	g := &Guard{Listener: ln, Log: slog.New(slog.NewTextHandler(lockedWriter{&logs, &logMu}, nil)),
		Candidates: func() []int { return []int{os.Getpid()} }, Allow: func(pid int) error {
			if pid != os.Getpid() {
				return errors.New("not the instance")
			}
			return nil
		}}
	t.Cleanup(func() { g.Close() })
	go func() {
		for {
			c, err := g.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = bufio.NewReader(c).ReadString('\n')
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
			}()
		}
	}()
	sample := func(n int) []time.Duration {
		var out []time.Duration
		for range n {
			start := time.Now()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			_, _ = io.WriteString(c, "PUT /latest/api/token HTTP/1.1\r\n\r\n")
			line, err := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if err != nil || !strings.Contains(line, "200") {
				t.Fatalf("the allowed caller's request: %q %v", line, err)
			}
			out = append(out, time.Since(start))
			time.Sleep(50 * time.Millisecond)
		}
		return out
	}
	before := sample(30)

	dir, err := os.MkdirTemp("", "haven-flood-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := dir + "/flood"
	if data, err := os.ReadFile(os.Args[0]); err != nil || os.WriteFile(bin, data, 0o755) != nil || os.Chmod(dir, 0o755) != nil {
		t.Fatalf("copy the test binary: %v", err)
	}
	cmd := exec.Command("nice", "-n", "19", bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), floodEnv+"="+ln.Addr().String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	time.Sleep(500 * time.Millisecond)
	during := sample(30)
	_ = cmd.Process.Kill()
	var opened int64
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		fmt.Sscan(sc.Text(), &opened)
	}
	after := sample(20)

	p90 := func(d []time.Duration) time.Duration {
		s := append([]time.Duration(nil), d...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[len(s)*9/10]
	}
	base := append(before, after...)
	logMu.Lock()
	refusals := strings.Count(logs.String(), "request refused")
	logMu.Unlock()
	t.Logf("allowed caller p90 %v without the flood, %v during it; the flood opened %d connections; %d refusals logged", p90(base), p90(during), opened, refusals)
	if opened < 1000 {
		t.Errorf("the flood opened %d connections; it proves nothing", opened)
	}
	if p90(during) > p90(base)+100*time.Millisecond {
		t.Errorf("the flood delayed the allowed caller: p90 %v during, %v without", p90(during), p90(base))
	}
	if refusals > 5 {
		t.Errorf("%d refusals logged for one flooding user in a few seconds; the log is not sampled", refusals)
	}
}
