package edge

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/clock"
)

// epoch is the fake clock's start.
var epoch = time.Date(2026, 11, 30, 7, 0, 0, 0, time.UTC)

// logBuffer keeps every log line of a test and sends it to t.Log.
type logBuffer struct {
	t    testing.TB
	mu   sync.Mutex
	buf  bytes.Buffer
	done bool
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if !l.done {
		l.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func testLogger(t testing.TB) (*slog.Logger, *logBuffer) {
	lb := &logBuffer{t: t}
	t.Cleanup(func() { lb.mu.Lock(); lb.done = true; lb.mu.Unlock() })
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

// origin is an httptest origin that counts and records its requests.
type origin struct {
	srv     *httptest.Server
	hits    atomic.Int64
	mu      sync.Mutex
	reqs    []*http.Request
	handler atomic.Pointer[http.HandlerFunc]
}

func newOrigin(t testing.TB, h http.HandlerFunc) *origin {
	o := &origin{}
	o.set(h)
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.hits.Add(1)
		o.mu.Lock()
		o.reqs = append(o.reqs, r.Clone(r.Context()))
		o.mu.Unlock()
		(*o.handler.Load())(w, r)
	}))
	t.Cleanup(o.srv.Close)
	return o
}

func (o *origin) set(h http.HandlerFunc) { o.handler.Store(&h) }
func (o *origin) count() int64           { return o.hits.Load() }
func (o *origin) last() *http.Request {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.reqs[len(o.reqs)-1]
}

// static serves body with the given headers, answering If-None-Match with 304.
func static(body string, hdr ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Set(hdr[i], hdr[i+1])
		}
		if et := w.Header().Get("ETag"); et != "" && r.Header.Get("If-None-Match") == et {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = io.WriteString(w, body)
	}
}

// cachedBehavior is /static/* on CachingOptimized, target "s3".
func cachedBehavior(pattern string) Behavior {
	return Behavior{PathPattern: pattern, Target: "s3", CachePolicy: CachingOptimized(), Compress: true,
		OriginRequestPolicy: CORSS3Origin()}
}

// newTestEdge returns an edge with origin "s3" at o (and "lb" at lbURL if
// set) and the fake clock it runs on; mod adjusts the config.
func newTestEdge(t testing.TB, o *origin, mod func(*Config)) (*Edge, *clock.Fake) {
	t.Helper()
	clk := clock.NewFake(epoch)
	log, _ := testLogger(t)
	cfg := Config{
		Origins:         []Origin{{ID: "s3", URL: o.srv.URL}},
		DefaultBehavior: Behavior{Target: "s3", CachePolicy: CachingDisabled(), OriginRequestPolicy: AllViewerExceptHostHeader(), AllowedMethods: methodsAll, Compress: true},
		Behaviors:       []Behavior{cachedBehavior("/static/*")},
		Logger:          log,
		Clock:           clk,
	}
	if mod != nil {
		mod(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Stop(t.Context()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return e, clk
}

// eventLog records the edge's events.
type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

// kinds returns the kinds recorded, in order.
func (l *eventLog) kinds() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.events {
		out = append(out, e.Kind)
	}
	return out
}

// do serves one request through e and returns the recorded response.
func do(e *Edge, method, target string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	e.ServeHTTP(w, r)
	return w
}

func get(e *Edge, target string, hdr ...string) *httptest.ResponseRecorder {
	return do(e, http.MethodGet, target, hdr...)
}

// want checks a response's status, X-Cache and, if body is not "", body.
func want(t *testing.T, w *httptest.ResponseRecorder, status int, xcache, body string) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status = %d, want %d; body %q", w.Code, status, w.Body.String())
	}
	if got := w.Header().Get("X-Cache"); xcache != "" && got != xcache {
		t.Fatalf("X-Cache = %q, want %q", got, xcache)
	}
	if body != "" && w.Body.String() != body {
		t.Fatalf("body = %q, want %q", w.Body.String(), body)
	}
}

// gate returns a channel origins block on and the func that opens it. Tests
// defer the func: deferred calls run before cleanups, so the origin's Close
// does not wait on a handler that never returns.
func gate(t testing.TB) (<-chan struct{}, func()) {
	ch := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(ch) }) }
	t.Cleanup(open)
	return ch, open
}

// waitFor polls cond until it holds or 10 s (real time) pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

const (
	hit        = "Hit from haven-edge"
	miss       = "Miss from haven-edge"
	refreshHit = "RefreshHit from haven-edge"
	errorX     = "Error from haven-edge"
)

// keys for signed URLs, generated once per test binary.
var (
	keysOnce sync.Once
	rsaKey   *rsa.PrivateKey
	rsaKey2  *rsa.PrivateKey
	ecKey    *ecdsa.PrivateKey
)

func testKeys(t testing.TB) {
	keysOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if rsaKey2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
	})
}

func pemPublic(t testing.TB, pub any) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// inFlight is the number of fetches in flight, background revalidations
// included.
func (g *flightGroup) inFlight() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.m)
}
