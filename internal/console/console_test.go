package console

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/haven-platform/haven/internal/alarms"
	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/clock"
	"github.com/haven-platform/haven/internal/drill"
	"github.com/haven-platform/haven/internal/headless"
	"github.com/haven-platform/haven/internal/headless/axe"
	"github.com/haven-platform/haven/internal/load"
	"github.com/haven-platform/haven/internal/metrics"
	"github.com/haven-platform/haven/internal/testkit"
)

var t0 = time.Date(2026, 11, 30, 7, 0, 0, 0, time.UTC)

// fakeRegion is a region of two zones with a primary in a and the alarms
// of a failover.
type fakeRegion struct {
	mu      sync.Mutex
	primary string
	reports drill.ReportStore
}

func (f *fakeRegion) Status() api.Status {
	return api.Status{Region: "courses", Phase: api.PhaseReady, Network: api.Network{Mode: "vpc"},
		Endpoints: api.Endpoints{HTTPS: "https://127.0.0.1:8443", Database: "127.0.0.1:6432"},
		Fleet:     api.Fleet{Min: 2, Desired: 2, Max: 6, InService: 2, Healthy: 2},
		Zones: []api.Zone{{Name: "a", AZ: "eu-west-1a", CIDR: "198.18.10.0/24", Subnets: map[string]string{"app": "198.18.10.0/24", "db": "198.18.12.0/24"}},
			{Name: "b", AZ: "eu-west-1b", CIDR: "198.18.20.0/24", Fault: "partition"}},
		Instances: []api.Instance{{ID: "i-0a", Zone: "a", Address: "198.18.10.4", State: "in-service", Health: "healthy", Target: "healthy"},
			{ID: "i-0b", Zone: "b", Address: "198.18.20.4", State: "pending", Health: "initial", Target: "initial"}},
	}
}

func (f *fakeRegion) DB() (api.DBStatus, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	standby := "db_b"
	if f.primary == "db_b" {
		standby = "db_a"
	}
	role := map[string]string{f.primary: "primary", standby: "standby"}
	return api.DBStatus{Primary: f.primary, Standby: standby, Epoch: 3, EndpointEpoch: 3, SyncState: "sync", ReplicationState: "streaming",
		Nodes: []api.DBNodeStatus{{Name: "db_a", Zone: "a", Address: "198.18.12.2", Role: role["db_a"], Health: "up"},
			{Name: "db_b", Zone: "b", Address: "198.18.22.2", Role: role["db_b"], Health: "up"}}}, true
}

func (f *fakeRegion) Events(q api.EventQuery) []api.Event {
	all := []api.Event{
		{Seq: 1, Time: time.Now().Add(-2 * time.Minute), Component: "db", Kind: "failover-completed", Subject: "db_b", Message: "db_b is the primary of epoch 3", Attrs: map[string]any{"epoch": 3}},
		{Seq: 2, Time: time.Now().Add(-time.Minute), Component: "alarms", Kind: "state-alarm", Subject: "db-failover", Message: "db-failover: OK → ALARM"},
		{Seq: 3, Time: time.Now().Add(-2 * time.Hour), Component: "fleet", Kind: "launch", Subject: "i-0a", Message: "zone a capacity"},
	}
	var out []api.Event
	for _, e := range all {
		if q.Match(e) {
			out = append(out, e)
		}
	}
	return out
}

func (f *fakeRegion) Series() []metrics.Point {
	var out []metrics.Point
	for i := range 120 {
		out = append(out, metrics.Point{Time: time.Now().Add(time.Duration(i-120) * time.Second), Requests: 50 + float64(i%7), Errors5xx: float64(i % 3),
			P99: 0.025, InService: 2, Healthy: 2, CPU: 20 + float64(i%10), ReplicationLag: math.NaN()})
	}
	return out
}

func (f *fakeRegion) Alarms() *alarms.Status {
	def := alarms.Definition{Name: "db-failover", Metric: "DatabaseFailovers", Statistic: "Sum", Period: time.Minute, EvaluationPeriods: 1, DatapointsToAlarm: 1,
		Comparison: alarms.GreaterThanThreshold, Runbook: "docs/runbooks/db-failover.md"}
	return &alarms.Status{Time: time.Now(), Alarms: []alarms.AlarmStatus{{Definition: def, State: alarms.StateAlarm, Reason: "Threshold Crossed", StateUpdated: time.Now(), Pending: 1}},
		Outbox: []alarms.Delivery{{Alarm: "db-failover", Action: "oncall", Attempts: 2, LastError: "connection refused"}}}
}

func (f *fakeRegion) AlarmHistory(name string) ([]alarms.HistoryItem, error) {
	if name != "db-failover" {
		return nil, &api.Error{Message: "alarm history " + name + ": no such alarm"}
	}
	return []alarms.HistoryItem{{Time: time.Now(), Type: alarms.HistoryStateUpdate, OldState: alarms.StateOK, NewState: alarms.StateAlarm, Summary: "Alarm updated from OK to ALARM", Reason: "Threshold Crossed"},
		{Time: time.Now(), Type: alarms.HistoryAction, Summary: "Failed to execute action oncall", Error: "connection refused"}}, nil
}

func (f *fakeRegion) Reports() drill.ReportStore { return f.reports }

func newFake(t *testing.T) *fakeRegion {
	f := &fakeRegion{primary: "db_a", reports: drill.ReportStore{Dir: filepath.Join(t.TempDir(), "drills")}}
	rep := drill.InstanceLossReport{Envelope: drill.Envelope{Drill: "instance-loss", StartedAt: t0, EndedAt: t0.Add(time.Minute), Region: "courses", HavenVersion: "test", Pass: true},
		Faults: []drill.FaultResult{{Kind: "kill", Instance: "i-0a", Zone: "a"}}}
	for i := range 60 {
		rep.Timeline = append(rep.Timeline, load.Second{T: i, RPS: 50, OK: 50, P50MS: 3, P99MS: 12})
	}
	raw, _ := json.Marshal(rep)
	if _, err := f.reports.Save(raw); err != nil {
		t.Fatal(err)
	}
	return f
}

func start(t *testing.T, f Region, clk clock.Clock) *Console {
	t.Helper()
	c, err := New(Config{Listen: "127.0.0.1:0", Region: f, Clock: clk, Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop(context.Background()) })
	return c
}

func client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 10 * time.Second}
}

func get(t *testing.T, c *http.Client, u string) (int, string, http.Header) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// TestLoginTokenBecomesASessionOnce: without a session every page says how
// to get one; a login link works once, before it expires, and its cookie
// is HttpOnly and SameSite=Strict; a request naming another host is
// refused (no DNS rebinding).
func TestLoginTokenBecomesASessionOnce(t *testing.T) {
	clk := clock.NewFake(t0)
	c := start(t, newFake(t), clk)
	hc := client()
	for _, p := range []string{"/", "/charts", "/alarms", "/events", "/reports", "/alarms/db-failover"} {
		code, body, h := get(t, hc, c.URL()+p)
		if code != http.StatusUnauthorized || !strings.Contains(body, "haven console") {
			t.Errorf("%s without a session: %d %q", p, code, body[:min(len(body), 80)])
		}
		if !strings.Contains(h.Get("Content-Security-Policy"), "script-src 'self'") {
			t.Errorf("%s: CSP %q", p, h.Get("Content-Security-Policy"))
		}
	}
	if code, _, _ := get(t, hc, c.URL()+"/fragment/map"); code != http.StatusUnauthorized {
		t.Errorf("fragment without a session: %d", code)
	}
	link, err := c.LoginURL()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/" {
		t.Fatalf("login: %d at %s, want the map after a redirect", resp.StatusCode, resp.Request.URL)
	}
	u, _ := url.Parse(c.URL())
	cks := hc.Jar.Cookies(u)
	if len(cks) != 1 || cks[0].Name != CookieName {
		t.Fatalf("cookies %v", cks)
	}
	if code, body, _ := get(t, hc, c.URL()+"/"); code != 200 || !strings.Contains(body, "Region map") {
		t.Errorf("the map with a session: %d", code)
	}
	// The same link again, from another browser: refused.
	other := client()
	if code, _, _ := get(t, other, link); code != http.StatusUnauthorized {
		t.Errorf("a used link: %d, want 401", code)
	}
	// A link used after its TTL: refused.
	late, _ := c.LoginURL()
	clk.Advance(DefaultTokenTTL + time.Second)
	if code, _, _ := get(t, other, late); code != http.StatusUnauthorized {
		t.Errorf("an expired link: %d, want 401", code)
	}
	// The session ends after its TTL.
	clk.Advance(DefaultSessionTTL)
	if code, _, _ := get(t, hc, c.URL()+"/"); code != http.StatusUnauthorized {
		t.Errorf("after the session's TTL: %d, want 401", code)
	}
	// DNS rebinding: another Host is refused before anything else.
	req, _ := http.NewRequest(http.MethodGet, c.URL()+"/login?token=x", nil)
	req.Host = "attacker.example:" + u.Port()
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("Host attacker.example: %d, want 421", r2.StatusCode)
	}
	// Raw header check of the cookie attributes.
	l2, _ := c.LoginURL()
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	r3, err := noFollow.Get(l2)
	if err != nil {
		t.Fatal(err)
	}
	r3.Body.Close()
	sc := r3.Header.Get("Set-Cookie")
	if !strings.Contains(sc, "HttpOnly") || !strings.Contains(sc, "SameSite=Strict") || r3.Header.Get("Location") != "/" {
		t.Errorf("Set-Cookie %q, Location %q", sc, r3.Header.Get("Location"))
	}
	if _, err := New(Config{Listen: "0.0.0.0:0", Region: newFake(t)}); err == nil || !strings.Contains(err.Error(), "console.listen") {
		t.Errorf("New on 0.0.0.0: %v, want a refusal naming console.listen", err)
	}
}

func signedIn(t *testing.T, c *Console) *http.Client {
	t.Helper()
	hc := client()
	link, err := c.LoginURL()
	if err != nil {
		t.Fatal(err)
	}
	if code, _, _ := get(t, hc, link); code != 200 {
		t.Fatalf("login: %d", code)
	}
	return hc
}

// TestPagesShowTheRegion: each page renders what the region's snapshots
// hold; the map's fragment follows the primary; events filter.
func TestPagesShowTheRegion(t *testing.T) {
	f := newFake(t)
	c := start(t, f, nil)
	hc := signedIn(t, c)
	l, _ := f.reports.List()
	for path, wants := range map[string][]string{
		"/":                   {`data-node="db_a" data-role="primary"`, "epoch 3", "i-0a", "partition", "198.18.12.0/24", `aria-current="page"`},
		"/charts":             {"Requests", "5xx responses", "Target response time p99", "Instances", "Instance CPU", "Replication lag", "<svg"},
		"/alarms":             {`data-alarm="db-failover" data-state="ALARM"`, "docs/runbooks/db-failover.md", "connection refused"},
		"/alarms/db-failover": {`data-alarm="db-failover" data-state="ALARM"`, `data-old-state="OK" data-new-state="ALARM"`, "Alarm updated from OK to ALARM", "Failed to execute action oncall"},
		"/events":             {"failover-completed", "state-alarm"},
		"/reports":            {l[0].ID, "PASS"},
		"/reports/" + l[0].ID: {"instance-loss drill", "faults", "Requests per second", "<svg"},
	} {
		code, body, _ := get(t, hc, c.URL()+path)
		if code != 200 {
			t.Errorf("%s: %d", path, code)
		}
		for _, w := range wants {
			if !strings.Contains(body, w) {
				t.Errorf("%s lacks %q", path, w)
			}
		}
	}
	if _, body, _ := get(t, hc, c.URL()+"/events?since=all&component=fleet"); !strings.Contains(body, "zone a capacity") || strings.Contains(body, "failover-completed") {
		t.Errorf("filtered events: %s", body)
	}
	if _, body, _ := get(t, hc, c.URL()+"/events?since=1h&kind=alarm"); strings.Contains(body, "zone a capacity") || !strings.Contains(body, "state-alarm") {
		t.Errorf("events by kind: %s", body)
	}
	if code, body, _ := get(t, hc, c.URL()+"/events?since=forever"); code != 200 || !strings.Contains(body, "since: must be one of") {
		t.Errorf("a bad filter: %d", code)
	}
	if code, _, _ := get(t, hc, c.URL()+"/alarms/nothing"); code != 404 {
		t.Errorf("an unknown alarm: %d", code)
	}
	if code, body, h := get(t, hc, c.URL()+"/reports/"+l[0].ID+".json"); code != 200 || h.Get("Content-Type") != "application/json" || !strings.Contains(body, `"drill": "instance-loss"`) {
		t.Errorf("report JSON: %d %s", code, h.Get("Content-Type"))
	}
	f.mu.Lock()
	f.primary = "db_b"
	f.mu.Unlock()
	if _, body, _ := get(t, hc, c.URL()+"/fragment/map"); !strings.Contains(body, `data-node="db_b" data-role="primary"`) || strings.Contains(body, "<html") {
		t.Errorf("the map fragment does not follow the primary, or is a whole page")
	}
	if code, body, h := get(t, hc, c.URL()+"/static/console.js"); code != 200 || !strings.Contains(body, "data-refresh") || !strings.Contains(h.Get("Content-Type"), "javascript") {
		t.Errorf("console.js: %d %s", code, h.Get("Content-Type"))
	}
}

// TestPagesAreAccessibleInChromium opens every page in headless Chromium,
// runs axe-core on it and requires no violation; the map page's script
// refreshes it as the primary moves.
func TestPagesAreAccessibleInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium: skipped with -short (scripts/test runs it)")
	}
	if _, err := headless.Find(); err != nil {
		t.Fatal(err)
	}
	f := newFake(t)
	c := start(t, f, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bctx, bcancel, err := headless.New(ctx, t.TempDir(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer bcancel()
	link, _ := c.LoginURL()
	if err := chromedp.Do(bctx, chromedp.Navigate(link), chromedp.WaitVisible(`[data-role="primary"]`)); err != nil {
		t.Fatal(err)
	}
	l, _ := f.reports.List()
	for _, p := range []string{"/", "/charts", "/events", "/alarms", "/alarms/db-failover", "/reports", "/reports/" + l[0].ID} {
		if err := chromedp.Do(bctx, chromedp.Navigate(c.URL()+p), chromedp.WaitReady("main")); err != nil {
			t.Fatalf("open %s: %v", p, err)
		}
		vs, err := axe.Run(bctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vs {
			t.Errorf("axe on %s: %s", p, v)
		}
	}
	// Live: the map follows the primary without a reload.
	if err := chromedp.Do(bctx, chromedp.Navigate(c.URL()+"/"), chromedp.WaitVisible(`[data-node="db_a"][data-role="primary"]`)); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.primary = "db_b"
	f.mu.Unlock()
	wctx, wcancel := context.WithTimeout(bctx, 15*time.Second)
	defer wcancel()
	if err := chromedp.Do(wctx, chromedp.WaitVisible(`[data-node="db_b"][data-role="primary"]`)); err != nil {
		t.Fatalf("the map did not follow the primary: %v", err)
	}
	if d := os.Getenv("HAVEN_ARTIFACTS"); d != "" {
		if shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100)); err == nil {
			os.MkdirAll(d, 0o755)
			os.WriteFile(filepath.Join(d, "console-map-fake.png"), shot, 0o644)
		}
	}
}
