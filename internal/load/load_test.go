package load

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/haven-platform/haven/internal/report"
)

// site is a test site with a login and items behind it. It counts what it
// served, so tests assert on counts.
type site struct {
	mu         sync.Mutex
	items      map[int]int    // item → requests served
	users      map[string]int // user → requests served
	anonymous  int
	failItem   int // this item answers 503
	failed     int
	stallUntil time.Time     // requests arriving before it wait until it
	delay      time.Duration // every item request takes this long
}

func newSite(t *testing.T) (*site, *httptest.Server) {
	s := &site{items: map[int]int{}, users: map[string]int{}, failItem: -1}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		user := r.FormValue("user")
		if r.FormValue("password") != "exam-week" || user == "" {
			http.Error(w, "bad credentials", http.StatusUnauthorized)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: "session", Value: user, Path: "/"})
	})
	mux.HandleFunc("GET /items/{k}", func(w http.ResponseWriter, r *http.Request) {
		k, _ := strconv.Atoi(r.PathValue("k"))
		s.mu.Lock()
		stall, delay := s.stallUntil, s.delay
		s.mu.Unlock()
		if d := time.Until(stall); d > 0 {
			time.Sleep(d)
		}
		time.Sleep(delay)
		c, err := r.Cookie("session")
		s.mu.Lock()
		defer s.mu.Unlock()
		if err != nil {
			s.anonymous++
			http.Error(w, "log in first", http.StatusUnauthorized)
			return
		}
		s.users[c.Value]++
		s.items[k]++
		if k == s.failItem {
			s.failed++
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "item %d for %s", k, c.Value)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return s, srv
}

func login(base string) LoginFunc {
	return func(ctx context.Context, c *http.Client, i int) error {
		form := url.Values{"user": {fmt.Sprintf("student%d", i+1)}, "password": {"exam-week"}}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/login", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("log in: %s", resp.Status)
		}
		return nil
	}
}

func browse(t *testing.T, srv *httptest.Server, users, items int) *Browse {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: 256}
	t.Cleanup(tr.CloseIdleConnections)
	u, err := LogIn(context.Background(), users, tr, 10*time.Second, login(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	z, err := NewZipf(items, 1.2, 42)
	if err != nil {
		t.Fatal(err)
	}
	return &Browse{BaseURL: srv.URL, Users: u, Items: z, Path: func(k int) string { return fmt.Sprintf("/items/%d", k) }}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// syncBuffer is a bytes.Buffer safe for the progress goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRunSteadyCountsEveryRequest(t *testing.T) {
	s, srv := newSite(t)
	s.failItem = 3
	j := browse(t, srv, 10, 20)
	var progress syncBuffer
	var observed int
	var omu sync.Mutex
	res, err := Run(context.Background(), Config{
		Profile:  Steady(100, 2*time.Second),
		Journey:  j,
		Progress: &progress,
		Logger:   quiet(),
		Observe: func(context.Context) Fleet {
			omu.Lock()
			defer omu.Unlock()
			observed++
			return Fleet{InService: 4, Pending: 2, AvgCPU: 61.234}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()

	// Exactly the scheduled number of requests, 100 in each second.
	if res.Summary.Requests != 200 || len(res.Timeline) != 2 {
		t.Fatalf("requests = %d over %d seconds, want 200 over 2", res.Summary.Requests, len(res.Timeline))
	}
	for _, sec := range res.Timeline {
		if sec.RPS != 100 || sec.TargetRPS != 100 {
			t.Fatalf("second %d: rps %d target %g, want 100", sec.T, sec.RPS, sec.TargetRPS)
		}
	}
	// What the generator counted is what the site served.
	served := 0
	for _, n := range s.items {
		served += n
	}
	if served != 200 || s.anonymous != 0 {
		t.Fatalf("site served %d requests (%d anonymous), want 200 logged in", served, s.anonymous)
	}
	if got := res.Summary.Errors["503"]; got != s.failed || got == 0 || res.Summary.OK != int64(200-s.failed) {
		t.Fatalf("503s counted %d, site failed %d, ok %d", got, s.failed, res.Summary.OK)
	}
	if res.Summary.ErrorRate != float64(s.failed)/200 {
		t.Fatalf("error rate = %g", res.Summary.ErrorRate)
	}
	// Round robin over the ten logged-in users.
	for i := 1; i <= 10; i++ {
		if n := s.users[fmt.Sprintf("student%d", i)]; n != 20 {
			t.Fatalf("student%d made %d requests, want 20", i, n)
		}
	}
	// Zipf popularity: the draws are seeded, so the counts are exact; the
	// head of the distribution is ordered.
	if !(s.items[0] > s.items[1] && s.items[1] > s.items[2]) {
		t.Fatalf("item popularity not Zipf-ordered: %v", s.items)
	}
	// Latency quantiles are filled and ordered.
	for _, sec := range res.Timeline {
		if !(sec.P50MS > 0 && sec.P50MS <= sec.P95MS && sec.P95MS <= sec.P99MS && sec.P99MS <= sec.MaxMS) {
			t.Fatalf("second %d quantiles: %+v", sec.T, sec)
		}
	}
	// The fleet callback filled at least the last second; the progress line
	// was written and ends with the summary.
	last := res.Timeline[len(res.Timeline)-1]
	if last.InService == nil || *last.InService != 4 || *last.Pending != 2 || last.AvgCPU == nil || *last.AvgCPU != 61.23 {
		t.Fatalf("last second fleet fields: %+v", last)
	}
	if observed == 0 {
		t.Fatal("Observe was never called")
	}
	out := progress.String()
	if !strings.Contains(out, "\r") || !strings.Contains(out, "load steady done: 200 requests") || !strings.HasSuffix(out, "\n") {
		t.Fatalf("progress output = %q", out)
	}
	// The JSON round-trips.
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var back Result
	if err := json.Unmarshal(b, &back); err != nil || back.Summary.Requests != 200 || len(back.Timeline) != 2 || back.Timeline[1].InService == nil {
		t.Fatalf("json round trip: %v %+v", err, back.Summary)
	}
}

// TestRunIsAnOpenModel: while the site stalls, requests keep starting on the
// timeline, and their latency counts from when they were due, so the stall
// shows in full instead of being hidden by a generator that waits.
func TestRunIsAnOpenModel(t *testing.T) {
	s, srv := newSite(t)
	j := browse(t, srv, 4, 5)
	s.stallUntil = time.Now().Add(1500 * time.Millisecond)
	res, err := Run(context.Background(), Config{Profile: Steady(50, 2*time.Second), Journey: j, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Timeline[0].RPS != 50 || res.Timeline[1].RPS != 50 {
		t.Fatalf("requests per second during a stall: %d, %d; want 50, 50", res.Timeline[0].RPS, res.Timeline[1].RPS)
	}
	// The first request was due at once and could not finish before the
	// stall ended (the handler sleeps until then).
	if res.Timeline[0].MaxMS < 1000 {
		t.Fatalf("max latency in the stalled second = %gms, want ≥ 1000ms", res.Timeline[0].MaxMS)
	}
	if res.Summary.OK != 100 {
		t.Fatalf("ok = %d, want 100", res.Summary.OK)
	}
	// Quantile spans seconds: the stalled first second holds the slow
	// requests, the second one (after the stall) does not.
	if p, n := res.Quantile(0, 2, 1); n != 100 || p != res.Summary.MaxMS {
		t.Errorf("Quantile over both seconds = %g ms of %d, want the max %g of 100", p, n, res.Summary.MaxMS)
	}
	if p, n := res.Quantile(1, 99, 0.5); n != 50 || p >= 1000 {
		t.Errorf("median of the second second = %g ms of %d, want < 1000 ms of 50", p, n)
	}
	if p, n := res.QuantileExcept(0, 1, 0.5); n != 50 || p >= 1000 {
		t.Errorf("median outside the first second = %g ms of %d, want < 1000 ms of 50", p, n)
	}
}

func TestRunCountsDroppedRequestsWithoutWaiting(t *testing.T) {
	s, srv := newSite(t)
	j := browse(t, srv, 2, 5)
	s.delay = 1500 * time.Millisecond // every request outlives the run's first second
	res, err := Run(context.Background(), Config{Profile: Steady(20, time.Second), Journey: j, MaxInFlight: 5, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	// All 20 were due; 5 went out, 15 were dropped because 5 were outstanding.
	if res.Summary.Requests != 20 || res.Summary.OK != 5 || res.Summary.Errors[ErrDropped] != 15 {
		t.Fatalf("summary = %+v", res.Summary)
	}
}

func TestRunClassifiesTimeoutsAndTransportErrors(t *testing.T) {
	s, srv := newSite(t)
	j := browse(t, srv, 1, 1)
	s.delay = time.Second
	res, err := Run(context.Background(), Config{Profile: Steady(5, time.Second), Journey: j, Timeout: 100 * time.Millisecond, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Summary.Errors[ErrTimeout] != 5 {
		t.Fatalf("errors = %v, want 5 timeouts", res.Summary.Errors)
	}
	// A closed port: transport errors.
	closed := httptest.NewServer(http.NotFoundHandler())
	base := closed.URL
	closed.Close()
	j.BaseURL = base
	res, err = Run(context.Background(), Config{Profile: Steady(5, time.Second), Journey: j, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Summary.Errors[ErrTransport] != 5 {
		t.Fatalf("errors = %v, want 5 transport errors", res.Summary.Errors)
	}
	// A journey that rejects a 200.
	res, _ = Run(context.Background(), Config{Profile: Steady(3, time.Second), Logger: quiet(), Journey: JourneyFunc(func(context.Context, uint64) Outcome {
		return Outcome{Status: 200, Err: fmt.Errorf("not the dashboard")}
	})})
	if res.Summary.Errors[ErrRejected] != 3 {
		t.Fatalf("errors = %v, want 3 rejected", res.Summary.Errors)
	}
}

func TestRunStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var started sync.WaitGroup
	started.Add(1)
	var once sync.Once
	res, err := Run(ctx, Config{Profile: Steady(100, time.Minute), Logger: quiet(), Journey: JourneyFunc(func(context.Context, uint64) Outcome {
		once.Do(func() { started.Done(); cancel() })
		return Outcome{Status: 200}
	})})
	if err == nil || res == nil {
		t.Fatalf("cancelled run returned err %v, result %v", err, res)
	}
	if res.Summary.Requests == 0 || res.Summary.Requests >= 6000 {
		t.Fatalf("a cancelled run made %d requests", res.Summary.Requests)
	}
}

// TestRunTakesAnyVegetaPacer: vegeta's ConstantPacer dues its first request
// one interval in, so over 2 s at 100/s it dues 199 before the end.
func TestRunTakesAnyVegetaPacer(t *testing.T) {
	var n atomic.Int64
	res, err := Run(context.Background(), Config{
		Profile: Profile{Name: "vegeta-constant", Pacer: vegeta.ConstantPacer{Freq: 100, Per: time.Second}, Duration: 2 * time.Second},
		Logger:  quiet(),
		Journey: JourneyFunc(func(context.Context, uint64) Outcome { n.Add(1); return Outcome{Status: 204} }),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Summary.Requests != 199 || n.Load() != 199 || res.Summary.OK != 199 {
		t.Fatalf("requests = %d (journey saw %d), want 199", res.Summary.Requests, n.Load())
	}
}

func TestZipfDistribution(t *testing.T) {
	z, err := NewZipf(50, 1.1, 7)
	if err != nil {
		t.Fatal(err)
	}
	const draws = 200_000
	counts := make([]int, 50)
	for i := 0; i < draws; i++ {
		counts[z.Next()]++
	}
	total := 0.0
	for k := 0; k < 50; k++ {
		total += z.Share(k)
		got := float64(counts[k]) / draws
		if math.Abs(got-z.Share(k)) > 0.01 {
			t.Fatalf("rank %d: share %.4f, want %.4f", k, got, z.Share(k))
		}
	}
	if math.Abs(total-1) > 1e-9 {
		t.Fatalf("shares sum to %g", total)
	}
	for k := 0; k < 5; k++ {
		if counts[k] <= counts[k+1] {
			t.Fatalf("rank %d drawn %d times, rank %d %d", k, counts[k], k+1, counts[k+1])
		}
	}
	if _, err := NewZipf(10, 1, 1); err == nil {
		t.Fatal("exponent 1 accepted")
	}
	if _, err := NewZipf(0, 1.1, 1); err == nil {
		t.Fatal("no items accepted")
	}
}

func TestLogInFailsAsAWhole(t *testing.T) {
	_, srv := newSite(t)
	_, err := LogIn(context.Background(), 3, http.DefaultTransport, time.Second, func(ctx context.Context, c *http.Client, i int) error {
		if i == 2 {
			return login(srv.URL+"/nowhere")(ctx, c, i)
		}
		return login(srv.URL)(ctx, c, i)
	})
	if err == nil || !strings.Contains(err.Error(), "log in user 2") {
		t.Fatalf("err = %v", err)
	}
}

func TestResultReport(t *testing.T) {
	s, srv := newSite(t)
	s.failItem = 0
	j := browse(t, srv, 3, 10)
	res, err := Run(context.Background(), Config{
		Profile: Spike(20, 60, time.Second, time.Second, time.Second),
		Journey: j,
		Logger:  quiet(),
		Observe: func(context.Context) Fleet { return Fleet{InService: 2, AvgCPU: math.NaN()} },
	})
	if err != nil {
		t.Fatal(err)
	}
	rep := res.Report("spike", 500)
	if len(rep.Charts) != 5 || len(rep.Events) != 2 || rep.Events[0].At != 1 {
		t.Fatalf("report: %d charts, events %+v", len(rep.Charts), rep.Events)
	}
	if n := len(rep.Charts[0].Series[1].Points); n != 3 || rep.Charts[0].Series[1].Points[1].Y != 60 {
		t.Fatalf("sent series: %+v", rep.Charts[0].Series[1].Points)
	}
	if rep.Charts[1].Thresholds[0].Value != 500 {
		t.Fatal("no SLO line on the latency chart")
	}
	var b bytes.Buffer
	if err := report.Render(&b, rep); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "503: ") || strings.Count(b.String(), `<svg class="chart"`) != 5 {
		t.Fatal("rendered report lacks the error breakdown or a chart")
	}
}
