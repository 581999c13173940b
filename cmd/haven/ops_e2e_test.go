package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/haven-platform/haven/internal/alarms"
	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/drill"
	"github.com/haven-platform/haven/internal/headless"
	"github.com/haven-platform/haven/internal/headless/axe"
	"github.com/haven-platform/haven/internal/testkit"
)

// webhookSink records the notifications a webhook action posts.
type webhookSink struct {
	mu  sync.Mutex
	got []alarms.Notification
}

func (s *webhookSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var n alarms.Notification
	if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.got = append(s.got, n)
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (s *webhookSink) count(alarm string, state alarms.State) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, x := range s.got {
		if x.AlarmName == alarm && x.NewStateValue == state {
			n++
		}
	}
	return n
}

func (s *webhookSink) total() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.got) }

// serviceNow is a ServiceNow-shaped incident table: the Table API's GET
// with an encoded query, POST (201) and PATCH, behind basic auth;
// resolving requires the close fields, as on an instance.
type serviceNow struct {
	user, password string
	mu             sync.Mutex
	incidents      []map[string]string
	posts          int
}

func (s *serviceNow) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u, p, ok := r.BasicAuth()
	if !ok || u != s.user || p != s.password {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"error":{"message":"User Not Authenticated"}}`)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	reply := func(code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]any{"result": v})
	}
	const table = "/api/now/table/incident"
	switch {
	case r.Method == http.MethodGet && r.URL.Path == table:
		q := r.URL.Query().Get("sysparm_query")
		corr, rest, _ := strings.Cut(strings.TrimPrefix(q, "correlation_id="), "^")
		if rest != "stateNOT IN6,7,8" {
			http.Error(w, "unexpected query "+q, http.StatusBadRequest)
			return
		}
		out := []map[string]string{}
		for _, in := range s.incidents {
			if in["correlation_id"] == corr && in["state"] != "6" {
				out = append(out, map[string]string{"sys_id": in["sys_id"], "number": in["number"], "state": in["state"]})
			}
		}
		reply(http.StatusOK, out)
	case r.Method == http.MethodPost && r.URL.Path == table:
		var in map[string]string
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in["correlation_id"] == "" || in["short_description"] == "" {
			http.Error(w, "bad incident", http.StatusBadRequest)
			return
		}
		s.posts++
		in["sys_id"], in["number"], in["state"] = fmt.Sprintf("sys%04d", len(s.incidents)), fmt.Sprintf("INC%07d", 10001+len(s.incidents)), "1"
		s.incidents = append(s.incidents, in)
		reply(http.StatusCreated, in)
	case r.Method == http.MethodPatch && strings.HasPrefix(r.URL.Path, table+"/"):
		var in map[string]string
		json.NewDecoder(r.Body).Decode(&in)
		for _, inc := range s.incidents {
			if inc["sys_id"] == strings.TrimPrefix(r.URL.Path, table+"/") {
				if in["state"] == "6" && (in["close_code"] == "" || in["close_notes"] == "") {
					http.Error(w, "Data Policy Exception: close_code and close_notes are mandatory", http.StatusForbidden)
					return
				}
				for k, v := range in {
					inc[k] = v
				}
				reply(http.StatusOK, inc)
				return
			}
		}
		http.Error(w, "no such record", http.StatusNotFound)
	default:
		http.Error(w, "not found", http.StatusNotFound)
	}
}

// incidentsOf returns the incidents of one alarm's correlation id.
func (s *serviceNow) incidentsOf(corr string) []map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]string
	for _, in := range s.incidents {
		if in["correlation_id"] == corr {
			c := map[string]string{}
			for k, v := range in {
				c[k] = v
			}
			out = append(out, c)
		}
	}
	return out
}

func alarmStatus(t *testing.T, ctx context.Context, r *testkit.Region) alarms.Status {
	t.Helper()
	out, errOut, err := r.Haven(ctx, "alarms", "--json")
	if err != nil {
		t.Fatalf("haven alarms --json: %v\n%s", err, errOut)
	}
	var st alarms.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("haven alarms --json: %v\n%s", err, out)
	}
	return st
}

func alarmOf(st alarms.Status, name string) alarms.AlarmStatus {
	for _, a := range st.Alarms {
		if a.Definition.Name == name {
			return a
		}
	}
	return alarms.AlarmStatus{}
}

func randomHex(t *testing.T) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return p
}

// artifacts is the git-ignored directory the browser test keeps its
// screenshots in (HAVEN_ARTIFACTS overrides it).
func artifacts(t *testing.T) string {
	d := os.Getenv("HAVEN_ARTIFACTS")
	if d == "" {
		d = filepath.Join("testdata", "artifacts", "console")
	}
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(d)
	return abs
}

// TestOperationsEndToEnd is issue 14's acceptance on one real region with a
// standby, time compressed 60× (alarm periods of 1 s): /metrics parses with
// Prometheus's text parser and a real Prometheus scrapes it and answers a
// PromQL query for the request rate; a headless Chromium signed into the
// console sees the primary move on the map and the failover alarm fire and
// clear while the db-failover drill kills the primary, with axe-core finding
// no violation on any page; the webhook and a ServiceNow-shaped server each
// get exactly one incident, resolved when the alarm returns to OK, while an
// unreachable webhook is retried, recorded, and blocks nothing; every log
// line is JSON with one component key; the drill's report is kept and
// renders; after the daemon is killed and the region brought up again, the
// alarms keep their state and nothing is sent twice.
func TestOperationsEndToEnd(t *testing.T) {
	ctx := testCtx(t, 8*time.Minute)
	if _, err := headless.Find(); err != nil {
		t.Fatal(err)
	}
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus is required (Debian package prometheus; scripts/setup installs it)")
	}
	hook := &webhookSink{}
	hookSrv := httptest.NewServer(hook)
	defer hookSrv.Close()
	sn := &serviceNow{user: "haven", password: "sn-" + randomHex(t)}
	snSrv := httptest.NewServer(sn)
	defer snSrv.Close()
	dead := fmt.Sprintf("http://127.0.0.1:%d/hook", closedPort(t))

	r := testkit.NewSpec(t, testkit.Options{MultiAZ: true, Students: 20, Courses: 3, Extra: fmt.Sprintf(`time_scale: 60
alarms:
  actions:
    - {name: hook, webhook: {url: %q}}
    - {name: incidents, servicenow: {instance_url: %q, credentials_secret: ops/servicenow}}
    - {name: dead, webhook: {url: %q}}
`, hookSrv.URL+"/haven", snSrv.URL, dead)})
	st := r.Up(ctx)
	requireVPC(t, st)
	// The ServiceNow integration user, in the secrets store (never in the
	// spec, never in an argument).
	put := exec.CommandContext(ctx, filepath.Join(r.Bin, "haven"), "secrets", "put", "ops/servicenow", "--state-dir", r.StateDir)
	put.Stdin = strings.NewReader(fmt.Sprintf(`{"username":%q,"password":%q}`, sn.user, sn.password))
	if out, err := put.CombinedOutput(); err != nil {
		t.Fatalf("haven secrets put: %v\n%s", err, out)
	}

	// 1. /metrics: Prometheus's own parser, and the tiers' families.
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", r.Ports.Metrics)
	site := httpsClient(t, st.Endpoints.CACert)
	for range 20 {
		if resp, err := site.Get(st.Endpoints.HTTPS + "/healthz"); err == nil {
			resp.Body.Close()
		}
	}
	resp, err := http.Get(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("/metrics does not parse with Prometheus's text parser: %v", err)
	}
	for _, name := range []string{"haven_lb_requests_total", "haven_lb_target_requests_total", "haven_lb_request_duration_seconds", "haven_lb_targets",
		"haven_fleet_instances", "haven_fleet_launches_total", "haven_instance_cpu_seconds_total", "haven_instance_memory_bytes",
		"haven_db_node_role", "haven_db_epoch", "haven_db_replication_lag_bytes", "haven_db_standby_synchronous", "haven_db_connections",
		"haven_secrets_api_calls_total", "haven_secrets_current_version_age_seconds", "haven_alarm_state", "go_goroutines"} {
		if fams[name] == nil {
			t.Errorf("/metrics lacks %s", name)
		}
	}

	// 2. A real Prometheus scrapes it every second; PromQL returns the
	// load balancer's request rate.
	promURL := startPrometheus(t, ctx, prom, r.Ports.Metrics)
	stopLoad := driveLoad(site, st.Endpoints.HTTPS+"/healthz")
	var rate float64
	waitFor(t, ctx, "Prometheus to answer sum(rate(haven_lb_requests_total[10s])) > 0", func() bool {
		rate = promQuery(t, promURL, "sum(rate(haven_lb_requests_total[10s]))")
		return rate > 0
	})
	t.Logf("PromQL sum(rate(haven_lb_requests_total[10s])) = %.1f req/s", rate)

	// 3. The alarms come up OK (their state known) after their periods.
	waitFor(t, ctx, "db-failover to be OK", func() bool { return alarmOf(alarmStatus(t, ctx, r), alarms.AlarmDBFailover).State == alarms.StateOK })
	waitFor(t, ctx, "the dead webhook's failures to be recorded", func() bool {
		for _, d := range alarmStatus(t, ctx, r).Outbox {
			if d.Action == "dead" && d.Attempts > 0 && strings.Contains(d.LastError, "connection refused") {
				return true
			}
		}
		return false
	})

	// 4. The console in headless Chromium, during the db-failover drill.
	login, errOut, err := r.Haven(ctx, "console", "--no-open")
	if err != nil || !strings.HasPrefix(strings.TrimSpace(login), fmt.Sprintf("http://127.0.0.1:%d/login?token=", r.Ports.Console)) {
		t.Fatalf("haven console: %v %q %s", err, login, errOut)
	}
	bctx, bcancel, err := headless.New(ctx, t.TempDir(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer bcancel()
	dir := artifacts(t)
	shot := func(name string) {
		if png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100)); err == nil {
			os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644)
		}
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", r.Ports.Console)
	if err := chromedp.Do(bctx, chromedp.Navigate(strings.TrimSpace(login)), chromedp.WaitVisible(`[data-role="primary"]`)); err != nil {
		t.Fatalf("open the console: %v", err)
	}
	primary, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.querySelector('[data-role="primary"]').dataset.node`))
	if err != nil || primary == "" {
		t.Fatalf("the primary on the map: %q %v", primary, err)
	}
	shot("01-map-before")
	// A second tab watches db-failover's page from before the fault: its
	// state now, and its history's transitions. With periods of 1 s the
	// ALARM lasts about a second, which a loaded machine may render too
	// late to see live; the history rows it leaves are seen whatever the
	// load, and the state is seen back at OK.
	actx, acancel := chromedp.NewContext(bctx)
	defer acancel()
	if err := chromedp.Do(actx, chromedp.Navigate(base+"/alarms/db-failover"), chromedp.WaitReady("main")); err != nil {
		t.Fatalf("open the alarm's page: %v", err)
	}
	type sawState struct{ live, fired, cleared bool }
	watched := make(chan sawState, 1)
	stopWatch := make(chan struct{})
	go func() {
		var saw sawState
		defer func() { watched <- saw }()
		for !saw.cleared {
			select {
			case <-stopWatch:
				return
			case <-time.After(150 * time.Millisecond):
			}
			if err := chromedp.Do(actx, chromedp.Navigate(base+"/alarms/db-failover"), chromedp.WaitReady("main")); err != nil {
				continue
			}
			got, err := chromedp.Run(actx, chromedp.Evaluate[string](`[
				(document.querySelector('[data-alarm="db-failover"]') || {dataset: {}}).dataset.state || '',
				document.querySelectorAll('tr[data-old-state="OK"][data-new-state="ALARM"]').length,
				document.querySelectorAll('tr[data-old-state="ALARM"][data-new-state="OK"]').length].join(' ')`))
			if err != nil {
				continue
			}
			var state string
			var toAlarm, toOK int
			fmt.Sscan(got, &state, &toAlarm, &toOK)
			if state == "ALARM" && !saw.live {
				saw.live = true
				if png, err := chromedp.Run(actx, chromedp.FullScreenshot(100)); err == nil {
					os.WriteFile(filepath.Join(dir, "03-alarm-fired.png"), png, 0o644)
				}
			}
			saw.fired = saw.live || toAlarm > 0
			saw.cleared = saw.fired && state == "OK" && toOK > 0
		}
	}()
	drillOut := make(chan error, 1)
	var drillLog syncBuffer
	go func() {
		cmd := exec.CommandContext(ctx, filepath.Join(r.Bin, "haven"), "drill", "db-failover", "--rounds", "1", "--state-dir", r.StateDir)
		cmd.Stdout, cmd.Stderr = &drillLog, &drillLog
		drillOut <- cmd.Run()
	}()
	// The map (refreshed by the page itself every 2 s) shows the other
	// node as the primary.
	moved := fmt.Sprintf(`[data-role="primary"]:not([data-node=%q])`, primary)
	mctx, mcancel := context.WithTimeout(bctx, 90*time.Second)
	defer mcancel()
	if err := chromedp.Do(mctx, chromedp.WaitVisible(moved)); err != nil {
		t.Fatalf("the map never showed the primary move from %s: %v\n%s", primary, err, drillLog.String())
	}
	shot("02-map-after-failover")
	var saw sawState
	select {
	case saw = <-watched:
	case <-time.After(90 * time.Second):
		close(stopWatch)
		saw = <-watched
	}
	if !saw.fired || !saw.cleared {
		t.Fatalf("the alarm's page showed db-failover fired %v, cleared %v; want both\n%s", saw.fired, saw.cleared, drillLog.String())
	}
	t.Logf("the console showed db-failover fire (in ALARM on the page: %v) and clear", saw.live)
	if err := <-drillOut; err != nil {
		t.Fatalf("drill db-failover: %v\n%s", err, drillLog.String())
	}
	// Every page is accessible.
	l, err := drill.ReportStore{Dir: filepath.Join(r.StateDir, "drills")}.List()
	if err != nil || len(l) != 1 || l[0].Drill != "db-failover" {
		t.Fatalf("drill reports: %+v %v", l, err)
	}
	for _, p := range []string{"/", "/charts", "/events?component=alarms", "/alarms", "/alarms/db-failover", "/reports", "/reports/" + l[0].ID} {
		if err := chromedp.Do(bctx, chromedp.Navigate(base+p), chromedp.WaitReady("main")); err != nil {
			t.Fatalf("open %s: %v", p, err)
		}
		vs, err := axe.Run(bctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vs {
			t.Errorf("axe on %s: %s", p, v)
		}
		if p == "/charts" {
			shot("04-charts")
		}
	}
	if err := chromedp.Do(bctx, chromedp.Navigate(base+"/alarms/db-failover")); err != nil {
		t.Fatal(err)
	}
	hist, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("main")))
	if err != nil || !strings.Contains(hist, "Alarm updated from OK to ALARM") || !strings.Contains(hist, "Alarm updated from ALARM to OK") {
		t.Errorf("the history page: %v\n%s", err, hist)
	}
	stopLoad()

	// 5. Exactly one incident each, resolved with the alarm; the dead
	// webhook blocked neither of them.
	corr := alarms.CorrelationID("test", alarms.AlarmDBFailover)
	waitFor(t, ctx, "the incident to be resolved", func() bool {
		inc := sn.incidentsOf(corr)
		return len(inc) == 1 && inc[0]["state"] == "6" && hook.count(alarms.AlarmDBFailover, alarms.StateOK) >= 2
	})
	if n := hook.count(alarms.AlarmDBFailover, alarms.StateAlarm); n != 1 {
		t.Errorf("the webhook got %d ALARM notifications of db-failover, want 1", n)
	}
	inc := sn.incidentsOf(corr)
	if len(inc) != 1 || !strings.Contains(inc[0]["short_description"], "ALARM: db-failover") || !strings.Contains(inc[0]["description"], "docs/runbooks/db-failover.md") || inc[0]["close_code"] == "" {
		t.Errorf("incidents of %s: %+v, want one, resolved, naming the runbook", corr, inc)
	}
	as := alarmStatus(t, ctx, r)
	pendingDead := 0
	for _, d := range as.Outbox {
		if d.Action != "dead" {
			t.Errorf("a notification to %s is still pending: %+v", d.Action, d)
		} else {
			pendingDead++
		}
	}
	if pendingDead == 0 {
		t.Error("no notification waits for the unreachable webhook")
	}
	histOut, _, err := r.Haven(ctx, "alarms", "history", alarms.AlarmDBFailover)
	if err != nil || !strings.Contains(histOut, "Failed to execute action dead") || !strings.Contains(histOut, "Successfully executed action incidents") ||
		!strings.Contains(histOut, "docs/runbooks/db-failover.md") {
		t.Errorf("haven alarms history: %v\n%s", err, histOut)
	}
	evOut, _, _ := r.Haven(ctx, "events", "--component", "alarms")
	if !strings.Contains(evOut, "db-failover: OK → ALARM") || !strings.Contains(evOut, "db-failover: ALARM → OK") {
		t.Errorf("haven events lacks the transitions:\n%s", evOut)
	}

	// 6. Logs: every line JSON with exactly one component key.
	checkLogs(t, ctx, r)

	// 7. The drill's report: listed, rendered.
	out, _, err := r.Haven(ctx, "drill", "reports")
	if err != nil || !strings.Contains(out, l[0].ID) || !strings.Contains(out, "PASS") {
		t.Errorf("haven drill reports: %v\n%s", err, out)
	}
	html := filepath.Join(t.TempDir(), "r.html")
	if _, errOut, err := r.Haven(ctx, "drill", "reports", l[0].ID, "--report", html); err != nil {
		t.Errorf("haven drill reports --report: %v %s", err, errOut)
	} else if b, _ := os.ReadFile(html); !strings.Contains(string(b), "<svg") || !strings.Contains(string(b), "db-failover drill") {
		t.Errorf("the rendered report has no chart")
	}
	raw, _ := os.ReadFile(filepath.Join(r.StateDir, "drills", l[0].ID+".json"))
	var env drill.Envelope
	if err := json.Unmarshal(raw, &env); err != nil || env.Region != "test" || len(env.SpecSHA256) != 64 || env.HavenVersion == "" || !env.Pass {
		t.Errorf("the saved report's envelope: %+v %v", env, err)
	}

	// 8. A daemon crash and a new up: the alarms keep their state, send
	// nothing again, and the undelivered notifications resume. An alarm
	// that lost its data during the drill (INSUFFICIENT_DATA while the
	// machine was busy) would go back to OK on its own, with its OK
	// actions, restart or not: wait until every alarm's state is settled,
	// known, or unknown for longer than any alarm's evaluation range.
	waitFor(t, ctx, "every alarm's state to settle before the crash", func() bool {
		for _, a := range alarmStatus(t, ctx, r).Alarms {
			if a.State == alarms.StateInsufficientData && time.Since(a.StateUpdated) < 30*time.Second {
				return false
			}
		}
		return true
	})
	before := alarmStatus(t, ctx, r)
	sent, posts := hook.total(), sn.posts
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testkit.WaitGone(ctx, st.PID)
	r.Up(ctx)
	after := alarmStatus(t, ctx, r)
	if len(after.Alarms) != len(before.Alarms) {
		t.Fatalf("after the restart %d alarms, before %d", len(after.Alarms), len(before.Alarms))
	}
	for _, a := range before.Alarms {
		b := alarmOf(after, a.Definition.Name)
		if b.State != a.State || !b.StateUpdated.Equal(a.StateUpdated) {
			t.Errorf("%s after the restart: %s since %s, before %s since %s", a.Definition.Name, b.State, b.StateUpdated, a.State, a.StateUpdated)
		}
	}
	// Let every alarm be evaluated again (NotBefore plus its N periods:
	// 15 s for asg-at-max's 3 × 5 s).
	waitFor(t, ctx, "every alarm to be evaluated after the restart", func() bool {
		for _, a := range alarmStatus(t, ctx, r).Alarms {
			if a.LastEvaluated.IsZero() {
				return false
			}
		}
		return true
	})
	// And once more, so that a notification a restart wrongly queued
	// would have had an evaluation and a delivery round to go out.
	evaluated := time.Now()
	waitFor(t, ctx, "every alarm to be evaluated again", func() bool {
		for _, a := range alarmStatus(t, ctx, r).Alarms {
			if !a.LastEvaluated.After(evaluated) {
				return false
			}
		}
		return true
	})
	for _, a := range alarmStatus(t, ctx, r).Alarms {
		if b := alarmOf(before, a.Definition.Name); a.State != b.State {
			t.Errorf("%s went from %s to %s across the restart", a.Definition.Name, b.State, a.State)
		}
	}
	if hook.total() != sent || sn.posts != posts {
		t.Errorf("after the restart the webhook got %d more notifications and ServiceNow %d more incidents, want none", hook.total()-sent, sn.posts-posts)
	}
	// The outbox holds what it held: the unreachable webhook's
	// notifications, none dropped, none added.
	ids := func(st alarms.Status) []string {
		var l []string
		for _, d := range st.Outbox {
			l = append(l, d.ID)
		}
		slices.Sort(l)
		return l
	}
	if b, a := ids(before), ids(alarmStatus(t, ctx, r)); len(a) == 0 || !slices.Equal(a, b) {
		t.Errorf("the outbox across the restart: before %v, after %v; want the same, not empty", b, a)
	}
}

// requireVPC fails a run as root (as CI runs) whose region came up
// without its VPC: operations are tested in the network a user gets.
func requireVPC(t *testing.T, st api.Status) {
	t.Helper()
	if os.Geteuid() == 0 && st.Network.Mode != "vpc" {
		t.Fatalf("as root the region has no VPC (%s): %s", st.Network.Mode, st.Network.Why)
	}
	t.Logf("network: %s %s", st.Network.Mode, st.Network.Range)
}

// driveLoad requests url about 20 times a second until stopped.
func driveLoad(c *http.Client, url string) func() {
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if resp, err := c.Get(url); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done) }) }
}

// startPrometheus runs a real Prometheus scraping the daemon every second
// and returns its URL.
func startPrometheus(t *testing.T, ctx context.Context, bin string, metricsPort int) string {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: haven
    static_configs: [{targets: ['127.0.0.1:%d']}]
`, metricsPort)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	port := testkit.FreePort(t)
	cmd := exec.CommandContext(ctx, bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port))
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus:\n%s", out.String())
		}
	})
	u := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitFor(t, ctx, "prometheus to be ready", func() bool {
		resp, err := http.Get(u + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return u
}

// promQuery runs an instant PromQL query and returns its one value (0 when
// the result is empty).
func promQuery(t *testing.T, base, q string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var out struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Status != "success" || len(out.Data.Result) == 0 {
		return 0
	}
	s, _ := out.Data.Result[0].Value[1].(string)
	var v float64
	fmt.Sscan(s, &v)
	return v
}

// checkLogs reads every log of the region with `haven logs` and the raw
// JSON logs (the daemon's, the access log) and requires each line to be a
// JSON object with exactly one component key.
func checkLogs(t *testing.T, ctx context.Context, r *testkit.Region) {
	t.Helper()
	st := r.StatusJSON(ctx)
	targets := []string{"daemon", "lb", "db", "db_a", "db_b", "events", "release"}
	for _, in := range st.Instances {
		targets = append(targets, in.ID)
	}
	for _, target := range targets {
		out, errOut, err := r.Haven(ctx, "logs", target)
		if err != nil {
			t.Errorf("haven logs %s: %v %s", target, err, errOut)
			continue
		}
		n := checkJSONLines(t, "haven logs "+target, out)
		if n == 0 && target != "release" {
			t.Errorf("haven logs %s printed nothing", target)
		}
	}
	for _, f := range []string{"daemon.log", filepath.Join("logs", "access.log")} {
		b, err := os.ReadFile(filepath.Join(r.StateDir, f))
		if err != nil {
			t.Fatal(err)
		}
		checkJSONLines(t, f, string(b))
	}
	all, _, _ := r.Haven(ctx, "logs", "daemon")
	recent, _, err := r.Haven(ctx, "logs", "--since", "2s", "daemon")
	if err != nil || strings.Count(recent, "\n") >= strings.Count(all, "\n") {
		t.Errorf("haven logs --since 2s daemon: %v, %d lines of %d", err, strings.Count(recent, "\n"), strings.Count(all, "\n"))
	}
	checkJSONLines(t, "haven logs --since", recent)
}

func checkJSONLines(t *testing.T, what, text string) int {
	t.Helper()
	n := 0
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		n++
		dec := json.NewDecoder(strings.NewReader(line))
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			t.Errorf("%s: not a JSON object: %.200s", what, line)
			continue
		}
		components := 0
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				t.Errorf("%s: bad JSON: %.200s", what, line)
				break
			}
			if k == "component" {
				components++
			}
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				t.Errorf("%s: bad JSON: %.200s", what, line)
				break
			}
		}
		if components != 1 {
			t.Errorf("%s: %d component keys: %.200s", what, components, line)
		}
	}
	return n
}

// TestHealthyHostsAlarmDuringInstanceLoss: with fleet.min 2 and desired 2,
// the instance-loss drill (an instance killed, another frozen) takes the
// healthy hosts below min: healthy-hosts-below-min goes to ALARM, and back
// to OK once the replacements are healthy. Then haven apply changes
// fleet.min and a threshold: the alarms follow, keeping their states.
func TestHealthyHostsAlarmDuringInstanceLoss(t *testing.T) {
	ctx := testCtx(t, 6*time.Minute)
	// Health checks every second, 3 to be healthy: a replacement takes a
	// few seconds, longer than the alarm's 3 periods of 1 s.
	r := testkit.NewSpec(t, testkit.Options{Min: 2, Desired: 2, Students: 20, Courses: 3, Extra: "time_scale: 60\n",
		HealthCheck: "{path: /healthz, interval: 1s, timeout: 500ms, healthy: 3, unhealthy: 2}"})
	requireVPC(t, r.Up(ctx))
	waitFor(t, ctx, "healthy-hosts-below-min to be OK", func() bool {
		return alarmOf(alarmStatus(t, ctx, r), alarms.AlarmHealthyHosts).State == alarms.StateOK
	})
	drillDone := make(chan error, 1)
	var drillLog syncBuffer
	go func() {
		cmd := exec.CommandContext(ctx, filepath.Join(r.Bin, "haven"), "drill", "instance-loss", "--duration", "12s", "--rate", "20", "--users", "5", "--state-dir", r.StateDir)
		cmd.Stdout, cmd.Stderr = &drillLog, &drillLog
		drillDone <- cmd.Run()
	}()
	var fired time.Time
	waitFor(t, ctx, "healthy-hosts-below-min to go to ALARM during the drill", func() bool {
		a := alarmOf(alarmStatus(t, ctx, r), alarms.AlarmHealthyHosts)
		if a.State == alarms.StateAlarm {
			fired = a.StateUpdated
			t.Logf("ALARM at %s: %s", fired.Format(time.TimeOnly), a.Reason)
			return true
		}
		return false
	})
	waitFor(t, ctx, "healthy-hosts-below-min back to OK after the replacement", func() bool {
		a := alarmOf(alarmStatus(t, ctx, r), alarms.AlarmHealthyHosts)
		return a.State == alarms.StateOK && a.StateUpdated.After(fired)
	})
	if err := <-drillDone; err != nil {
		t.Errorf("instance-loss drill: %v\n%s", err, drillLog.String())
	}
	st := r.StatusJSON(ctx)
	if st.Fleet.Healthy < 2 {
		t.Errorf("after the drill %d healthy, want 2", st.Fleet.Healthy)
	}
	hist, _, err := r.Haven(ctx, "alarms", "history", alarms.AlarmHealthyHosts, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var items []alarms.HistoryItem
	json.Unmarshal([]byte(hist), &items)
	var toAlarm, toOK int
	for _, h := range items {
		if h.Type == alarms.HistoryStateUpdate && h.NewState == alarms.StateAlarm {
			toAlarm++
		}
		if h.Type == alarms.HistoryStateUpdate && h.NewState == alarms.StateOK && h.OldState == alarms.StateAlarm {
			toOK++
		}
	}
	if toAlarm == 0 || toOK == 0 {
		t.Errorf("history has %d transitions to ALARM and %d back to OK:\n%s", toAlarm, toOK, hist)
	}

	// haven apply changes a threshold and fleet.min (which is
	// healthy-hosts-below-min's threshold) in place: the engine takes the
	// new definitions, every alarm keeps its state, time and history, and
	// the status (so every drill report) names the applied spec.
	// The drill's freeze may have left healthy-hosts-below-min in ALARM
	// until its replacement is counted: from a settled region, a change of
	// state across the apply can only be the apply's doing.
	waitFor(t, ctx, "healthy-hosts-below-min to be OK with 2 healthy hosts", func() bool {
		return alarmOf(alarmStatus(t, ctx, r), alarms.AlarmHealthyHosts).State == alarms.StateOK && r.StatusJSON(ctx).Fleet.Healthy == 2
	})
	before := alarmStatus(t, ctx, r)
	edit(t, r.SpecFile, "fleet: {min: 2,", "fleet: {min: 1,")
	edit(t, r.SpecFile, "time_scale: 60\n", "time_scale: 60\nalarms: {thresholds: {p99_latency_seconds: 0.5}}\n")
	out, errOut, err := r.Haven(ctx, "apply", "--auto-approve")
	if err != nil || !strings.Contains(out, "Apply complete") {
		t.Fatalf("apply: %v\n%s\n%s", err, out, errOut)
	}
	applied := time.Now()
	after := alarmStatus(t, ctx, r)
	if th := alarmOf(after, alarms.AlarmHealthyHosts).Definition.Threshold; th != 1 {
		t.Errorf("after the apply %s's threshold is %g, want fleet.min 1", alarms.AlarmHealthyHosts, th)
	}
	if th := alarmOf(after, alarms.AlarmP99Latency).Definition.Threshold; th != 0.5 {
		t.Errorf("after the apply %s's threshold is %g, want 0.5", alarms.AlarmP99Latency, th)
	}
	for _, a := range before.Alarms {
		b := alarmOf(after, a.Definition.Name)
		if b.State != a.State || !b.StateUpdated.Equal(a.StateUpdated) {
			t.Errorf("%s across the apply: %s since %s, before %s since %s", a.Definition.Name, b.State, b.StateUpdated, a.State, a.StateUpdated)
		}
	}
	hist2, _, err := r.Haven(ctx, "alarms", "history", alarms.AlarmHealthyHosts, "--json")
	var items2 []alarms.HistoryItem
	if err != nil || json.Unmarshal([]byte(hist2), &items2) != nil || len(items2) < len(items) {
		t.Errorf("history across the apply: %d items, before %d (%v)", len(items2), len(items), err)
	}
	waitFor(t, ctx, "every alarm to be evaluated by the new engine", func() bool {
		for _, a := range alarmStatus(t, ctx, r).Alarms {
			if !a.LastEvaluated.After(applied) {
				return false
			}
		}
		return true
	})
	if got, want := r.StatusJSON(ctx).SpecSHA256, fileSHA256(r.SpecFile); got != want {
		t.Errorf("status spec_sha256 %s after the apply, want the applied file's %s", got, want)
	}
}
