package lb

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/clock"
	"github.com/haven-platform/haven/internal/spec"
)

func TestNoTrafficBeforeHealthy(t *testing.T) {
	l, c := startLB(t, func(cfg *Config) { cfg.HealthCheck.HealthyThreshold = 3 })
	a := newBackend(t, "a", nil)
	register(t, l, "a", "za", a.addr())
	waitState(t, l, "a", StateHealthy)

	b := newBackend(t, "b", nil)
	b.healthy.Store(false)
	register(t, l, "b", "zb", b.addr())
	if st, _ := l.TargetHealth("b"); st != StateInitial {
		t.Fatalf("new target state = %q, want initial", st)
	}
	// Traffic flows while b is initial, then after b turns healthy.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failed atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := c.Get(l.HTTPSURL() + "/")
			if err != nil || resp.StatusCode != 200 {
				failed.Add(1)
			}
			if resp != nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}()
	for b.checks.Load() < 4 {
		time.Sleep(10 * time.Millisecond)
	}
	if got := b.hits.Load(); got != 0 {
		t.Errorf("initial target with failing checks got %d requests, want 0", got)
	}
	b.healthy.Store(true)
	waitState(t, l, "b", StateHealthy)
	for b.hits.Load() < 5 {
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Errorf("%d requests failed, want 0", n)
	}
	// The first request to b came after at least 3 consecutive passed checks.
	b.mu.Lock()
	events := append([]string(nil), b.events...)
	b.mu.Unlock()
	consecutive := 0
	for _, e := range events {
		switch e {
		case "check-ok":
			consecutive++
		case "check-fail":
			consecutive = 0
		case "req":
			if consecutive < 3 {
				t.Fatalf("first request reached b after %d consecutive passed checks, want >= 3 (events %v)", consecutive, events)
			}
			return
		}
	}
	t.Fatalf("b got no request: events %v", events)
}

func TestNoTargets503(t *testing.T) {
	l, c := startLB(t, nil)
	status, body := get(t, c, l.HTTPSURL()+"/")
	if status != http.StatusServiceUnavailable {
		t.Errorf("status with no targets = %d, want 503", status)
	}
	if !strings.Contains(body, "503 Service Temporarily Unavailable") {
		t.Errorf("503 body = %q, want ALB's", body)
	}
	// A target that has not passed its checks yet does not count.
	b := newBackend(t, "b", nil)
	b.healthy.Store(false)
	register(t, l, "b", "za", b.addr())
	if status, _ := get(t, c, l.HTTPSURL()+"/"); status != http.StatusServiceUnavailable {
		t.Errorf("status with only an initial target = %d, want 503", status)
	}
	if b.hits.Load() != 0 {
		t.Errorf("initial target got %d requests, want 0", b.hits.Load())
	}
	if got := l.Stats().ELB503; got != 2 {
		t.Errorf("Stats.ELB503 = %d, want 2", got)
	}
}

func TestFailOpen(t *testing.T) {
	l, c := startLB(t, nil)
	a := newBackend(t, "a", nil)
	b := newBackend(t, "b", nil)
	register(t, l, "a", "za", a.addr())
	register(t, l, "b", "zb", b.addr())
	waitState(t, l, "a", StateHealthy)
	waitState(t, l, "b", StateHealthy)
	a.healthy.Store(false)
	b.healthy.Store(false)
	waitState(t, l, "a", StateUnhealthy)
	waitState(t, l, "b", StateUnhealthy)
	for range 10 {
		if status, _ := get(t, c, l.HTTPSURL()+"/"); status != 200 {
			t.Fatalf("status with every target unhealthy = %d, want 200 (fail open)", status)
		}
	}
	if a.hits.Load() != 5 || b.hits.Load() != 5 {
		t.Errorf("fail-open hits a=%d b=%d, want 5 and 5", a.hits.Load(), b.hits.Load())
	}
	// One healthy target again: it alone gets traffic.
	a.healthy.Store(true)
	waitState(t, l, "a", StateHealthy)
	before := b.hits.Load()
	for range 10 {
		get(t, c, l.HTTPSURL()+"/")
	}
	if got := b.hits.Load() - before; got != 0 {
		t.Errorf("unhealthy target got %d requests while another was healthy, want 0", got)
	}
}

func TestRoundRobinAcrossZones(t *testing.T) {
	l, c := startLB(t, nil)
	var bs []*backend
	for _, id := range []string{"a1", "a2", "b1", "b2"} {
		b := newBackend(t, id, nil)
		bs = append(bs, b)
		register(t, l, id, id[:1], b.addr())
	}
	for _, b := range bs {
		waitState(t, l, b.id, StateHealthy)
	}
	var seq []string
	for range 200 {
		_, body := get(t, c, l.HTTPSURL()+"/")
		seq = append(seq, body)
	}
	for _, b := range bs {
		if got := b.hits.Load(); got != 50 {
			t.Errorf("target %s got %d of 200 requests, want 50", b.id, got)
		}
	}
	// The per-target counter the scaler reads (RequestCountPerTarget)
	// agrees with what each backend saw. A request is counted once its
	// answer has been written (on the HTTP/1.1 loop, just after the client
	// may have read it): wait for the last one.
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		var n uint64
		for _, ts := range l.Targets() {
			n += ts.Requests
		}
		if n >= 200 {
			break
		}
	}
	for _, ts := range l.Targets() {
		if ts.Requests != 50 {
			t.Errorf("target %s: Requests = %d, want 50", ts.ID, ts.Requests)
		}
	}
	for i := 1; i < len(seq); i++ {
		if seq[i][0] == seq[i-1][0] {
			t.Fatalf("requests %d and %d both went to zone %c; want zones to alternate: %v", i-1, i, seq[i][0], seq[:i+1])
		}
	}
}

func TestLeastOutstandingPrefersIdle(t *testing.T) {
	l, c := startLB(t, func(cfg *Config) { cfg.Algorithm = LeastOutstandingRequests })
	release := make(chan struct{})
	busy := newBackend(t, "busy", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "busy")
	})
	idle := newBackend(t, "idle", nil)
	register(t, l, "busy", "za", busy.addr())
	waitState(t, l, "busy", StateHealthy)
	// Park two slow requests on busy while it is the only target.
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			get(t, c, l.HTTPSURL()+"/slow")
		}()
	}
	for busy.hits.Load() < 2 {
		time.Sleep(5 * time.Millisecond)
	}
	register(t, l, "idle", "zb", idle.addr())
	waitState(t, l, "idle", StateHealthy)
	for range 20 {
		if _, body := get(t, c, l.HTTPSURL()+"/"); body != "idle" {
			t.Errorf("request went to %q with 2 requests outstanding there, want idle", body)
		}
	}
	close(release)
	wg.Wait()
	// With nothing outstanding, ties rotate across both.
	before := busy.hits.Load()
	for range 20 {
		get(t, c, l.HTTPSURL()+"/")
	}
	if got := busy.hits.Load() - before; got < 5 {
		t.Errorf("idle-tie rotation sent %d of 20 to busy, want a fair share", got)
	}
}

// TestSlowStartRamps jumps through slow start on a clock.Offset while health
// checks keep their real pace.
func TestSlowStartRamps(t *testing.T) {
	clk := &clock.Offset{}
	l, c := startLB(t, func(cfg *Config) { cfg.Clock = clk; cfg.SlowStart = 100 * time.Second })
	old := newBackend(t, "old", nil)
	fresh := newBackend(t, "fresh", nil)
	register(t, l, "old", "za", old.addr())
	waitState(t, l, "old", StateHealthy)
	register(t, l, "fresh", "zb", fresh.addr())
	waitState(t, l, "fresh", StateHealthy)

	share := func() int64 {
		before := fresh.hits.Load()
		for range 100 {
			get(t, c, l.HTTPSURL()+"/")
		}
		return fresh.hits.Load() - before
	}
	// Weight ~0.01 at the start: about 1 in 100.
	if got := share(); got > 5 {
		t.Errorf("fresh target's share at slow-start begin = %d/100, want <= 5", got)
	}
	clk.Advance(50 * time.Second) // weight 0.5: 1/3 of traffic
	if got := share(); got < 25 || got > 42 {
		t.Errorf("fresh target's share half-way = %d/100, want about 33", got)
	}
	clk.Advance(60 * time.Second) // done: half
	if got := share(); got < 45 || got > 55 {
		t.Errorf("fresh target's share after slow start = %d/100, want about 50", got)
	}
}

func TestDrainWaitsForInFlight(t *testing.T) {
	l, c := startLB(t, nil)
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	slow := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		io.WriteString(w, "slow")
	})
	other := newBackend(t, "other", nil)
	register(t, l, "slow", "za", slow.addr())
	waitState(t, l, "slow", StateHealthy)

	var changes []TargetStatus
	var mu sync.Mutex
	l.OnChange(func(s TargetStatus) { mu.Lock(); changes = append(changes, s); mu.Unlock() })

	slowDone := make(chan string, 1)
	go func() {
		status, body := get(t, c, l.HTTPSURL()+"/slow")
		slowDone <- http.StatusText(status) + " " + body
	}()
	<-started
	register(t, l, "other", "zb", other.addr())
	waitState(t, l, "other", StateHealthy)

	deregDone := make(chan error, 1)
	go func() { deregDone <- l.Deregister(context.Background(), "slow") }()
	waitState(t, l, "slow", StateDraining)
	hitsAtDrain := slow.hits.Load()
	for range 10 {
		if _, body := get(t, c, l.HTTPSURL()+"/"); body != "other" {
			t.Errorf("request during drain went to %q, want other", body)
		}
	}
	select {
	case err := <-deregDone:
		t.Fatalf("Deregister returned %v while a request was in flight", err)
	default:
	}
	if st := l.Targets(); len(st) != 2 || st[1].ID != "slow" || st[1].InFlight != 1 {
		t.Errorf("Targets during drain = %+v, want slow with 1 in flight", st)
	}
	close(release)
	if err := <-deregDone; err != nil {
		t.Fatalf("Deregister: %v", err)
	}
	if got := <-slowDone; got != "OK slow" {
		t.Errorf("in-flight request during drain = %q, want OK slow", got)
	}
	if got := slow.hits.Load(); got != hitsAtDrain {
		t.Errorf("draining target got %d new requests, want 0", got-hitsAtDrain)
	}
	if _, ok := l.TargetHealth("slow"); ok {
		t.Errorf("target still registered after Deregister returned")
	}
	mu.Lock()
	defer mu.Unlock()
	var states []State
	for _, s := range changes {
		if s.ID == "slow" {
			states = append(states, s.State)
		}
	}
	if len(states) != 2 || states[0] != StateDraining || states[1] != StateUnused {
		t.Errorf("OnChange states for slow = %v, want [draining unused]", states)
	}
}

func TestDrainDelayExpiryRetriesIdempotent(t *testing.T) {
	l, c := startLB(t, func(cfg *Config) { cfg.DeregistrationDelay = 200 * time.Millisecond })
	hung := make(chan struct{})
	stuck := newBackend(t, "stuck", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // so the server notices the LB closing the connection
		select {
		case <-hung:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(hung) }) // runs before the backend's Close
	register(t, l, "stuck", "za", stuck.addr())
	waitState(t, l, "stuck", StateHealthy)
	done := make(chan string, 2)
	go func() { _, body := get(t, c, l.HTTPSURL()+"/get"); done <- "GET " + body }()
	go func() {
		resp, err := c.Post(l.HTTPSURL()+"/post", "text/plain", strings.NewReader("x"))
		if err != nil {
			done <- "POST error " + err.Error()
			return
		}
		resp.Body.Close()
		done <- "POST " + http.StatusText(resp.StatusCode)
	}()
	for stuck.hits.Load() < 2 {
		time.Sleep(5 * time.Millisecond)
	}
	other := newBackend(t, "other", nil)
	register(t, l, "other", "zb", other.addr())
	waitState(t, l, "other", StateHealthy)
	if err := l.Deregister(context.Background(), "stuck"); err != nil {
		t.Fatalf("Deregister: %v", err)
	}
	got := map[string]bool{<-done: true, <-done: true}
	if !got["GET other"] || !got["POST Bad Gateway"] {
		t.Errorf("after deregistration delay: %v, want GET retried to other and POST 502", got)
	}
}

func TestPassiveEjectionRetriesAnyMethodOnDialError(t *testing.T) {
	l, c := startLB(t, func(cfg *Config) {
		// Slow checks, so the ejection is surely passive.
		cfg.HealthCheck.Interval, cfg.HealthCheck.Timeout = 5*time.Second, time.Second
		cfg.HealthCheck.HealthyThreshold = 1
	})
	a := newBackend(t, "a", nil)
	b := newBackend(t, "b", nil)
	register(t, l, "a", "za", a.addr())
	register(t, l, "b", "zb", b.addr())
	waitState(t, l, "a", StateHealthy)
	waitState(t, l, "b", StateHealthy)
	a.srv.Close() // connections now refused
	for i := range 4 {
		resp, err := c.Post(l.HTTPSURL()+"/", "text/plain", strings.NewReader("payload"))
		if err != nil {
			t.Fatalf("POST %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "b" {
			t.Errorf("POST %d = %d %q, want 200 from b", i, resp.StatusCode, body)
		}
	}
	st, _ := l.TargetHealth("a")
	if st != StateUnhealthy {
		t.Errorf("refusing target state = %q, want unhealthy", st)
	}
	s := l.Stats()
	if s.Ejections != 1 || s.Retries != 1 {
		t.Errorf("Stats ejections=%d retries=%d, want 1 and 1", s.Ejections, s.Retries)
	}
	for _, ts := range l.Targets() {
		if ts.ID == "a" && ts.Reason != ReasonConnectionError {
			t.Errorf("ejected target reason = %q, want %q", ts.Reason, ReasonConnectionError)
		}
	}
}

// dropper answers every proxied request by closing the connection without a
// response; health checks pass.
func dropper(t *testing.T, id string) *backend {
	return newBackend(t, id, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		conn.Close()
	})
}

func TestPostNotRetriedAfterSend(t *testing.T) {
	l, c := startLB(t, func(cfg *Config) {
		cfg.HealthCheck.Interval, cfg.HealthCheck.Timeout = 5*time.Second, time.Second
		cfg.HealthCheck.HealthyThreshold = 1
	})
	a, b := dropper(t, "a"), dropper(t, "b")
	register(t, l, "a", "za", a.addr())
	register(t, l, "b", "zb", b.addr())
	waitState(t, l, "a", StateHealthy)
	waitState(t, l, "b", StateHealthy)
	resp, err := c.Post(l.HTTPSURL()+"/", "text/plain", strings.NewReader("once"))
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("POST to a target that drops the connection = %d, want 502", resp.StatusCode)
	}
	if got := a.hits.Load() + b.hits.Load(); got != 1 {
		t.Errorf("POST reached targets %d times, want exactly 1", got)
	}
	if got := l.Stats().Retries; got != 0 {
		t.Errorf("Stats.Retries = %d, want 0", got)
	}
}

func TestIdempotentRetriedAfterSend(t *testing.T) {
	l, c := startLB(t, func(cfg *Config) {
		cfg.HealthCheck.Interval, cfg.HealthCheck.Timeout = 5*time.Second, time.Second
		cfg.HealthCheck.HealthyThreshold = 1
	})
	a := dropper(t, "a")
	b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.Method+" "+string(body))
	})
	register(t, l, "a", "za", a.addr())
	register(t, l, "b", "zb", b.addr())
	waitState(t, l, "a", StateHealthy)
	waitState(t, l, "b", StateHealthy)
	// Round robin starts at zone a; a drops the PUT, which is retried on b with its body.
	req, _ := http.NewRequest(http.MethodPut, l.HTTPSURL()+"/x", strings.NewReader("data"))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "PUT data" {
		t.Errorf("PUT = %d %q, want 200 \"PUT data\"", resp.StatusCode, body)
	}
	if a.hits.Load() != 1 || b.hits.Load() != 1 {
		t.Errorf("hits a=%d b=%d, want 1 and 1", a.hits.Load(), b.hits.Load())
	}
	if st, _ := l.TargetHealth("a"); st != StateUnhealthy {
		t.Errorf("dropping target state = %q, want unhealthy (ejected)", st)
	}
	// A POST with an Idempotency-Key is retried too. a is ejected, so add a
	// second dropping target; of two POSTs, one lands on it first.
	a2 := dropper(t, "a2")
	register(t, l, "a2", "za", a2.addr())
	waitState(t, l, "a2", StateHealthy)
	for i := range 2 {
		req, _ := http.NewRequest(http.MethodPost, l.HTTPSURL()+"/y", strings.NewReader("p"))
		req.Header.Set("Idempotency-Key", "k"+string(rune('0'+i)))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "POST p" {
			t.Errorf("POST with Idempotency-Key = %d %q, want 200 \"POST p\"", resp.StatusCode, body)
		}
	}
	if got := a2.hits.Load(); got != 1 {
		t.Errorf("second dropping target got %d requests, want 1", got)
	}
}

func TestNoRetryAfterResponseStarted(t *testing.T) {
	l, c := startLB(t, nil)
	mk := func(id string) *backend {
		return newBackend(t, id, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "1000")
			w.WriteHeader(200)
			io.WriteString(w, "partial")
			http.NewResponseController(w).Flush()
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
		})
	}
	a, b := mk("a"), mk("b")
	register(t, l, "a", "za", a.addr())
	register(t, l, "b", "zb", b.addr())
	waitState(t, l, "a", StateHealthy)
	waitState(t, l, "b", StateHealthy)
	resp, err := c.Get(l.HTTPSURL() + "/")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("status = %d, want the target's 200", resp.StatusCode)
		}
	}
	if err == nil {
		t.Errorf("client read a complete response, want an error or truncation")
	}
	if got := a.hits.Load() + b.hits.Load(); got != 1 {
		t.Errorf("targets got %d requests, want exactly 1 (no retry after response started)", got)
	}
	if got := l.Stats().Retries; got != 0 {
		t.Errorf("Stats.Retries = %d, want 0", got)
	}
}

func TestTimeout504(t *testing.T) {
	l, c := startLB(t, func(cfg *Config) { cfg.IdleTimeout = 300 * time.Millisecond })
	block := make(chan struct{})
	defer close(block)
	slow := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	})
	other := newBackend(t, "other", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	})
	register(t, l, "slow", "za", slow.addr())
	register(t, l, "other", "zb", other.addr())
	waitState(t, l, "slow", StateHealthy)
	waitState(t, l, "other", StateHealthy)
	status, body := get(t, c, l.HTTPSURL()+"/")
	if status != http.StatusGatewayTimeout {
		t.Errorf("status = %d, want 504", status)
	}
	if !strings.Contains(body, "504 Gateway Time-out") || strings.Contains(body, "slow") || strings.Contains(body, "other") {
		t.Errorf("504 body = %q, want ALB's, naming no target", body)
	}
	if got := slow.hits.Load() + other.hits.Load(); got != 1 {
		t.Errorf("targets got %d requests, want 1 (timeouts are not retried)", got)
	}
	if got := l.Stats().ELB504; got != 1 {
		t.Errorf("Stats.ELB504 = %d, want 1", got)
	}
}

func TestGarbageResponse502(t *testing.T) {
	l, c := startLB(t, func(cfg *Config) { cfg.HealthCheck.Path = "/"; cfg.HealthCheck.Matcher = spec.MustMatcher("200-499") })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var garbageSent atomic.Int64
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				r := bufio.NewReader(conn)
				req, err := http.ReadRequest(r)
				if err != nil {
					return
				}
				if req.Header.Get("User-Agent") == "haven-lb-healthchecker/1.0" {
					io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
					return
				}
				garbageSent.Add(1)
				io.WriteString(conn, "this is not HTTP\r\n\r\n")
			}()
		}
	}()
	register(t, l, "g", "za", ln.Addr().String())
	waitState(t, l, "g", StateHealthy)
	resp, err := c.Post(l.HTTPSURL()+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("status for a garbage response = %d, want 502", resp.StatusCode)
	}
	if garbageSent.Load() != 1 {
		t.Errorf("garbage target got %d requests, want 1", garbageSent.Load())
	}
}

func TestForwardedHeadersAndRequestID(t *testing.T) {
	var logBuf syncBuffer
	l, c := startLB(t, func(cfg *Config) { cfg.AccessLog = &logBuf })
	echo := newBackend(t, "e", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", "backend-must-not-win")
		json.NewEncoder(w).Encode(map[string]string{
			"xff": r.Header.Get("X-Forwarded-For"), "proto": r.Header.Get("X-Forwarded-Proto"),
			"port": r.Header.Get("X-Forwarded-Port"), "rid": r.Header.Get("X-Request-Id"),
			"host": r.Host, "trace": r.Header.Get("X-Amzn-Trace-Id"),
		})
	})
	register(t, l, "e", "za", echo.addr())
	waitState(t, l, "e", StateHealthy)
	_, port, _ := net.SplitHostPort(l.HTTPSAddr())

	req, _ := http.NewRequest(http.MethodGet, l.HTTPSURL()+"/p?q=1", nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	req.Header.Set("X-Request-Id", "req-123")
	req.Host = "courses.example"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	want := map[string]string{"xff": "203.0.113.7, 127.0.0.1", "proto": "https", "port": port, "rid": "req-123", "host": "courses.example"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("target saw %s = %q, want %q", k, got[k], v)
		}
	}
	if !strings.HasPrefix(got["trace"], "Root=1-") {
		t.Errorf("X-Amzn-Trace-Id = %q, want Root=1-...", got["trace"])
	}
	if ids := resp.Header.Values("X-Request-Id"); len(ids) != 1 || ids[0] != "req-123" {
		t.Errorf("response X-Request-Id = %v, want [req-123]", ids)
	}

	// Without a request ID, one is generated, passed on and echoed.
	resp, err = c.Get(l.HTTPSURL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if rid := resp.Header.Get("X-Request-Id"); len(rid) != 32 || got["rid"] != rid {
		t.Errorf("generated request id: response %q, target saw %q; want the same 32 hex chars", rid, got["rid"])
	}

	// Error responses carry the request ID too.
	if err := l.Deregister(context.Background(), "e"); err != nil {
		t.Fatal(err)
	}
	resp, err = c.Get(l.HTTPSURL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("X-Request-Id") == "" {
		t.Errorf("503 response: status %d, X-Request-Id %q; want 503 with an ID", resp.StatusCode, resp.Header.Get("X-Request-Id"))
	}

	// Access log: one JSON line per request, written once the answer has
	// been sent (so it can say 460 when the client was gone): it may come
	// just after the client has its response.
	var lines []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		lines = strings.Split(strings.TrimSpace(logBuf.String()), "\n")
		if len(lines) >= 3 || time.Now().After(deadline) {
			break
		}
	}
	if len(lines) != 3 {
		t.Fatalf("access log has %d lines, want 3:\n%s", len(lines), logBuf.String())
	}
	var e accessEntry
	if err := json.Unmarshal([]byte(lines[0]), &e); err != nil {
		t.Fatalf("access log line: %v", err)
	}
	if e.RequestID != "req-123" || e.Status != 200 || e.TargetID != "e" || e.TargetAddr != echo.addr() || e.Attempts != 1 || e.Method != "GET" || e.Path != "/p" || e.Bytes == 0 || e.Client == "" {
		t.Errorf("access log entry = %+v", e)
	}
	if err := json.Unmarshal([]byte(lines[2]), &e); err != nil || e.Status != 503 || e.Error == "" {
		t.Errorf("access log 503 entry = %+v (err %v), want status 503 with error", e, err)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestHTTPRedirect(t *testing.T) {
	l, _ := startLB(t, func(cfg *Config) { cfg.HTTPAddr = "127.0.0.1:0" })
	_, httpsPort, _ := net.SplitHostPort(l.HTTPSAddr())
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	tests := []struct {
		method string
		want   int
	}{
		{http.MethodGet, http.StatusMovedPermanently},
		{http.MethodHead, http.StatusMovedPermanently},
		{http.MethodPost, http.StatusPermanentRedirect},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, "http://"+l.HTTPAddr()+"/a/b?x=1", nil)
		req.Host = "courses.example:8080"
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s: status %d, want %d", tt.method, resp.StatusCode, tt.want)
		}
		if loc, want := resp.Header.Get("Location"), "https://courses.example:"+httpsPort+"/a/b?x=1"; loc != want {
			t.Errorf("%s: Location %q, want %q", tt.method, loc, want)
		}
	}
}

func TestRegisterErrors(t *testing.T) {
	l, _ := startLB(t, nil)
	b := newBackend(t, "a", nil)
	register(t, l, "a", "za", b.addr())
	if err := l.Register(Target{ID: "a", Zone: "za", Addr: b.addr()}); !errors.Is(err, ErrDuplicateTarget) {
		t.Errorf("duplicate Register = %v, want ErrDuplicateTarget", err)
	}
	if err := l.Register(Target{ID: "x", Addr: "nope"}); err == nil {
		t.Errorf("Register with a bad addr: nil error")
	}
	if err := l.Deregister(context.Background(), "missing"); !errors.Is(err, ErrUnknownTarget) {
		t.Errorf("Deregister unknown = %v, want ErrUnknownTarget", err)
	}
}

func TestStopLeavesNoGoroutines(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		cfg := testConfig(t)
		var clientTLS *tls.Config
		cfg.TLS, clientTLS = testTLS(t)
		cfg.DeregistrationDelay = time.Hour
		l, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
		srvs := []*httptest.Server{httptest.NewServer(mux), httptest.NewServer(mux)}
		defer func() {
			for _, s := range srvs {
				s.Close()
			}
		}()
		register(t, l, "a", "za", srvs[0].Listener.Addr().String()) // before Start
		if err := l.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		register(t, l, "b", "zb", srvs[1].Listener.Addr().String())
		waitState(t, l, "a", StateHealthy)
		waitState(t, l, "b", StateHealthy)
		tr := &http.Transport{TLSClientConfig: clientTLS}
		c := &http.Client{Transport: tr}
		for range 10 {
			get(t, c, l.HTTPSURL()+"/")
		}
		tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := l.Stop(ctx); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		if err := l.Register(Target{ID: "c", Addr: "127.0.0.1:1"}); !errors.Is(err, ErrStopped) {
			t.Errorf("Register after Stop = %v, want ErrStopped", err)
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after Stop, %d before:\n%s", n, base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestUpgradeAndHTTP2(t *testing.T) {
	l, c := startLB(t, nil)
	echo := newBackend(t, "e", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			io.WriteString(w, r.Proto)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		buf := make([]byte, 4)
		if _, err := io.ReadFull(brw, buf); err == nil {
			conn.Write(buf)
		}
	})
	register(t, l, "e", "za", echo.addr())
	waitState(t, l, "e", StateHealthy)

	req, _ := http.NewRequest(http.MethodGet, l.HTTPSURL()+"/ws", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	resp, err := (&http.Client{Transport: c.Transport}).Do(req) // no Timeout: it would hide the writable body
	if err != nil {
		t.Fatalf("upgrade request: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade status = %d, want 101", resp.StatusCode)
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		t.Fatalf("101 body is not writable: %T %v", resp.Body, resp.Header)
	}
	if _, err := rwc.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(rwc, got); err != nil || string(got) != "ping" {
		t.Errorf("echo over upgraded connection = %q, %v; want ping", got, err)
	}
	rwc.Close()

	// HTTP/2 from the client; HTTP/1.1 to the target.
	tr := c.Transport.(*http.Transport).Clone()
	tr.ForceAttemptHTTP2 = true
	t.Cleanup(tr.CloseIdleConnections)
	resp, err = (&http.Client{Transport: tr}).Get(l.HTTPSURL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Proto != "HTTP/2.0" || string(body) != "HTTP/1.1" {
		t.Errorf("client proto %s, target saw %q; want HTTP/2.0 and HTTP/1.1", resp.Proto, body)
	}
}

// TestDialReachesTargetsForRequestsAndChecks: Config.Dial carries every
// connection to a target, health checks and requests alike (in a region's
// VPC, it dials from the load balancer's namespace); a target it cannot
// reach is never healthy.
func TestDialReachesTargetsForRequestsAndChecks(t *testing.T) {
	b := newBackend(t, "a1", nil)
	var dials atomic.Int64
	l, c := startLB(t, func(cfg *Config) {
		cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr != b.addr() {
				return nil, fmt.Errorf("dial %s: not reachable from this network", addr)
			}
			dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
	})
	register(t, l, "a1", "a", b.addr())
	register(t, l, "b1", "b", "127.0.0.1:1")
	waitState(t, l, "a1", StateHealthy)
	checks := dials.Load()
	if checks == 0 {
		t.Fatal("the health checks did not dial through Config.Dial")
	}
	for range 5 {
		if code, body := get(t, c, l.HTTPSURL()+"/"); code != 200 || body != "a1" {
			t.Fatalf("GET = %d %q, want 200 a1", code, body)
		}
	}
	if dials.Load() == checks {
		t.Error("the requests did not dial through Config.Dial")
	}
	if st, _ := l.TargetHealth("b1"); st == StateHealthy {
		t.Errorf("b1, which Dial cannot reach, is %s", st)
	}
}
