package lb

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/ca"
	"github.com/haven-platform/haven/internal/testkit"
)

const healthPath = "/healthz"

// TestMain lets the test binary double as a tiny HTTP backend process, so that
// tests can SIGKILL and SIGSTOP a real separate process.
func TestMain(m *testing.M) {
	if os.Getenv("HAVEN_LB_TEST_BACKEND") == "1" {
		runBackendProcess()
		return
	}
	if os.Getenv("HAVEN_LB_TEST_SERVE") == "1" {
		os.Exit(runServeProcess())
	}
	os.Exit(m.Run())
}

func runBackendProcess() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().String())
	pid := os.Getpid()
	http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == healthPath {
			w.WriteHeader(http.StatusOK)
			return
		}
		fmt.Fprintf(w, "pid %d\n", pid)
	}))
}

// backendProcess is a re-executed test binary serving HTTP.
type backendProcess struct {
	cmd  *exec.Cmd
	addr string
}

func startBackendProcess(t *testing.T) *backendProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "HAVEN_LB_TEST_BACKEND=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start backend process: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGCONT)
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("read backend address: %v", err)
	}
	return &backendProcess{cmd: cmd, addr: strings.TrimSpace(line)}
}

// backend is an in-process target. Its health endpoint answers 200 while
// healthy is true, 503 otherwise; other paths go to handler (default: 200
// with the backend's id) and are counted in hits.
type backend struct {
	id      string
	srv     *httptest.Server
	healthy atomic.Bool
	hits    atomic.Int64
	checks  atomic.Int64

	mu     sync.Mutex
	events []string // "check-ok", "check-fail", "req" in arrival order
}

func newBackend(t testing.TB, id string, handler http.HandlerFunc) *backend {
	t.Helper()
	b := &backend{id: id}
	b.healthy.Store(true)
	if handler == nil {
		handler = func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, id) }
	}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == healthPath {
			b.checks.Add(1)
			if b.healthy.Load() {
				b.event("check-ok")
				w.WriteHeader(http.StatusOK)
			} else {
				b.event("check-fail")
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			return
		}
		b.hits.Add(1)
		b.event("req")
		handler(w, r)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) event(e string) {
	b.mu.Lock()
	b.events = append(b.events, e)
	b.mu.Unlock()
}

func (b *backend) addr() string { return b.srv.Listener.Addr().String() }

// testTLS returns a server config with a certificate for 127.0.0.1 and
// localhost, and a client trusting it.
func testTLS(t testing.TB) (*tls.Config, *tls.Config) {
	t.Helper()
	c, err := ca.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := c.IssueServer([]string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}, &tls.Config{RootCAs: c.Pool()}
}

// testConfig has tight timings for tests.
func testConfig(t testing.TB) Config {
	return Config{
		Name: t.Name(),
		HealthCheck: HealthCheck{
			Path: healthPath, Interval: 150 * time.Millisecond, Timeout: 120 * time.Millisecond,
			HealthyThreshold: 2, UnhealthyThreshold: 2,
		},
		DeregistrationDelay: 5 * time.Second,
		Logger:              testkit.Logger(t),
	}
}

// startLB starts a load balancer from testConfig modified by mod, and returns it
// with an HTTPS client that trusts it.
func startLB(t testing.TB, mod func(*Config)) (*LB, *http.Client) {
	t.Helper()
	cfg := testConfig(t)
	var clientTLS *tls.Config
	cfg.TLS, clientTLS = testTLS(t)
	if mod != nil {
		mod(&cfg)
	}
	l, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := l.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := l.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	tr := &http.Transport{TLSClientConfig: clientTLS, MaxIdleConnsPerHost: 16, Proxy: nil}
	t.Cleanup(tr.CloseIdleConnections)
	return l, &http.Client{Transport: tr, Timeout: 15 * time.Second}
}

func register(t testing.TB, l *LB, id, zone, addr string) {
	t.Helper()
	if err := l.Register(Target{ID: id, Zone: zone, Addr: addr}); err != nil {
		t.Fatalf("Register %s: %v", id, err)
	}
}

// waitState polls until target id is in state want, failing after 10s.
func waitState(t testing.TB, l *LB, id string, want State) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, ok := l.TargetHealth(id)
		if ok && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("target %s: state %q (registered %v), want %q", id, got, ok, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// get does a GET and returns status and body; a transport error fails the test.
func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, string(b)
}
