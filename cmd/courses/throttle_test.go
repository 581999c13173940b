package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// stepClock is a clock tests move by hand; it is safe for concurrent use.
// After waits in real time (only the DB's retry backoff uses it).
type stepClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *stepClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

func (c *stepClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestThrottleDecide(t *testing.T) {
	p := ThrottlePolicy{AccountLimit: 3, ClientLimit: 5, Window: 15 * time.Minute}
	t0 := time.Unix(1_000_000, 0)
	now := t0.Add(5 * time.Minute)
	tests := []struct {
		name          string
		acct, cli     int
		acctStart     time.Time
		allowed       bool
		scope         string
		retryAfterMin time.Duration
	}{
		{"first attempt", 1, 1, t0, true, "", 0},
		{"at the account limit", 3, 1, t0, true, "", 0},
		{"over the account limit", 4, 1, t0, false, scopeAccount, 10 * time.Minute},
		{"at the client limit", 1, 5, t0, true, "", 0},
		{"over the client limit", 1, 6, t0, false, scopeClient, 10 * time.Minute},
		// Both refuse: the later end wins (the account window began later).
		{"both, account ends later", 4, 6, t0.Add(2 * time.Minute), false, scopeAccount, 12 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := p.decide(now, throttleCount{tt.acct, tt.acctStart}, throttleCount{tt.cli, t0})
			if v.Allowed != tt.allowed || v.Scope != tt.scope || v.RetryAfter != tt.retryAfterMin {
				t.Errorf("decide = %+v, want allowed=%v scope=%q retry=%v", v, tt.allowed, tt.scope, tt.retryAfterMin)
			}
		})
	}
	// A window that has (nearly) ended still says to wait at least 1 s.
	v := p.decide(t0.Add(p.Window), throttleCount{4, t0}, throttleCount{1, t0})
	if v.Allowed || v.RetryAfter != time.Second {
		t.Errorf("decide at the window's end = %+v, want refused with 1s", v)
	}
}

func TestThrottleMessage(t *testing.T) {
	acct := throttleMessage(throttleVerdict{Scope: scopeAccount, RetryAfter: 14*time.Minute + time.Second})
	if !strings.Contains(acct, "for this account") || !strings.Contains(acct, "15 minutes") || !strings.Contains(acct, "Try again") {
		t.Errorf("account message = %q", acct)
	}
	cli := throttleMessage(throttleVerdict{Scope: scopeClient, RetryAfter: 20 * time.Second})
	if !strings.Contains(cli, "from your network") || !strings.Contains(cli, "1 minute") {
		t.Errorf("client message = %q", cli)
	}
}

func TestClientAddr(t *testing.T) {
	trusted, err := ParseTrustedProxies(strings.Join(defaultTrustedProxies, ","))
	if err != nil {
		t.Fatal(err)
	}
	lb := ClientIPConfig{TrustedProxies: trusted, Hops: 1}
	edge := ClientIPConfig{TrustedProxies: trusted, Hops: 2}
	tests := []struct {
		name   string
		cfg    ClientIPConfig
		remote string
		xff    []string
		want   string
	}{
		{"through the LB", lb, "10.0.1.5:41000", []string{"203.0.113.7"}, "203.0.113.7"},
		// The client wrote its own X-Forwarded-For; the LB appended the
		// real address after it. Only the LB's entry counts.
		{"spoofed entries are ignored", lb, "10.0.1.5:41000", []string{"1.2.3.4, 5.6.7.8, 203.0.113.7"}, "203.0.113.7"},
		{"spoofed in a second header", lb, "127.0.0.1:41000", []string{"1.2.3.4", "203.0.113.7"}, "203.0.113.7"},
		{"no header from a trusted peer", lb, "127.0.0.1:41000", nil, "127.0.0.1"},
		// Straight from the internet: the header is the client's own.
		{"untrusted peer", lb, "198.51.100.9:5000", []string{"203.0.113.7"}, "198.51.100.9"},
		{"header ignored with 0 hops", ClientIPConfig{TrustedProxies: trusted}, "10.0.1.5:1", []string{"203.0.113.7"}, "10.0.1.5"},
		{"edge and LB", edge, "10.0.1.5:1", []string{"1.2.3.4, 203.0.113.7, 130.176.1.2"}, "203.0.113.7"},
		{"edge skipped", edge, "10.0.1.5:1", []string{"203.0.113.7"}, "203.0.113.7"},
		{"garbage entry", lb, "10.0.1.5:1", []string{"203.0.113.7, not-an-ip"}, "10.0.1.5"},
		{"haven's namespaces are trusted", lb, "198.18.0.10:1", []string{"127.0.0.1"}, "127.0.0.1"},
		{"IPv4-mapped peer", lb, "[::ffff:10.0.1.5]:1", []string{"203.0.113.7"}, "203.0.113.7"},
		{"IPv6 client", lb, "[fd00::1]:1", []string{"2001:db8:1:2:3:4:5:6"}, "2001:db8:1:2:3:4:5:6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cfg.clientAddr(tt.remote, tt.xff); got.String() != tt.want {
				t.Errorf("clientAddr(%q, %q) = %s, want %s", tt.remote, tt.xff, got, tt.want)
			}
		})
	}
	// One IPv6 subscriber holds a /64: every address in it is one client.
	a := clientKey(netip.MustParseAddr("2001:db8:1:2:3:4:5:6"))
	b := clientKey(netip.MustParseAddr("2001:db8:1:2:ffff::1"))
	if a != b || a != "2001:db8:1:2::/64" {
		t.Errorf("clientKey of two addresses in one /64 = %q, %q; want both 2001:db8:1:2::/64", a, b)
	}
	if k := clientKey(netip.MustParseAddr("203.0.113.7")); k != "203.0.113.7" {
		t.Errorf("clientKey(IPv4) = %q", k)
	}
}

func TestParseTrustedProxies(t *testing.T) {
	got, err := ParseTrustedProxies(" 10.0.0.0/8, 192.168.1.7/16 ,")
	if err != nil || len(got) != 2 || got[1].String() != "192.168.0.0/16" {
		t.Errorf("ParseTrustedProxies = %v, %v", got, err)
	}
	if _, err := ParseTrustedProxies("10.0.0.0/8,10.0.0.1"); err == nil || !strings.Contains(err.Error(), "--trusted-proxies") {
		t.Errorf("a bare address: err = %v, want a --trusted-proxies error", err)
	}
}

// apiLoginFrom posts a JSON login as if through the load balancer from the
// client address ip (the LB appends it to X-Forwarded-For); spoof is what
// the client itself put in the header.
func (c *client) apiLoginFrom(ip, spoof, email, password string) (*http.Response, map[string]any) {
	c.t.Helper()
	body, _ := json.Marshal(map[string]string{"email": email, "password": password})
	xff := ip
	if spoof != "" {
		xff = spoof + ", " + ip
	}
	resp, b := c.do("POST", "/api/login", "application/json", strings.NewReader(string(body)), map[string]string{"X-Forwarded-For": xff})
	var out map[string]any
	_ = json.Unmarshal([]byte(b), &out)
	return resp, out
}

// TestLoginThrottle checks issue 9's "no rate limit or lockout on login":
// per account (across clients and instances) and per client (whatever it
// writes in X-Forwarded-For), with 429, Retry-After and a clear message, no
// bcrypt for a refused attempt, and no penalty for correct logins.
func TestLoginThrottle(t *testing.T) {
	pg := startPG(t)
	log := testLogger(t)
	db := seededDB(t, pg, log)
	clk := &stepClock{now: time.Now()}
	policy := ThrottlePolicy{AccountLimit: 3, ClientLimit: 5, Window: 15 * time.Minute}
	newSrv := func(db *DB) (*Server, string) {
		s, err := NewServer(ServerConfig{DB: db, Logger: log, Clock: clk, Throttle: policy})
		if err != nil {
			t.Fatal(err)
		}
		hs := newHTTPTestServer(t, s)
		return s, hs
	}
	srvA, urlA := newSrv(db)
	_, urlB := newSrv(openTestDB(t, pg, log)) // a second instance behind the LB
	c := newClient(t, urlA)

	// Per account: three wrong passwords from one client...
	for i := range 3 {
		if resp, _ := c.apiLoginFrom("203.0.113.1", "", "student1@example.edu", "wrong-password"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %d, want 401", i+1, resp.StatusCode)
		}
	}
	checks := srvA.passwordChecks.Load()
	// ...pause the account: the right password, from another client, on
	// another instance, is refused without a password check.
	cb := newClient(t, urlB)
	resp, body := cb.apiLoginFrom("198.51.100.2", "", "Student1@Example.edu ", testPassword)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("4th login to a paused account: %d %v, want 429", resp.StatusCode, body)
	}
	ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	if ra < 1 || ra > 900 || body["scope"] != scopeAccount || !strings.Contains(body["error"].(string), "Too many failed logins for this account") {
		t.Errorf("refusal: Retry-After %q, body %v", resp.Header.Get("Retry-After"), body)
	}
	if resp, _ := c.apiLoginFrom("203.0.113.1", "", "student1@example.edu", testPassword); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("paused account on instance A: %d, want 429", resp.StatusCode)
	}
	if got := srvA.passwordChecks.Load(); got != checks {
		t.Errorf("refused logins ran %d password checks, want 0", got-checks)
	}
	// Other accounts are not affected.
	if resp, _ := c.apiLoginFrom("198.51.100.2", "", "student2@example.edu", testPassword); resp.StatusCode != http.StatusOK {
		t.Errorf("another account during the pause: %d, want 200", resp.StatusCode)
	}
	// The HTML form says the same, keeps the email, and puts the message
	// by the password field.
	h := newClient(t, urlA)
	_, page := h.get("/login")
	resp, page = h.do("POST", "/login", "application/x-www-form-urlencoded", strings.NewReader(url.Values{
		"email": {"student1@example.edu"}, "password": {testPassword}, "csrf_token": {formToken(t, page)}}.Encode()),
		map[string]string{"X-Forwarded-For": "203.0.113.9"})
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" ||
		!strings.Contains(page, `id="password-err"`) || !strings.Contains(page, "Too many failed logins for this account") ||
		!strings.Contains(page, `value="student1@example.edu"`) {
		t.Errorf("HTML login to a paused account: %d\n%s", resp.StatusCode, page)
	}
	// The window ends: the account logs in again.
	clk.Advance(policy.Window)
	if resp, body := c.apiLoginFrom("203.0.113.1", "", "student1@example.edu", testPassword); resp.StatusCode != http.StatusOK {
		t.Fatalf("login after the window: %d %v, want 200", resp.StatusCode, body)
	}

	// A success clears the account's count: two failures, a success, two
	// more failures and the account still logs in.
	for _, pw := range []string{"bad-1", "bad-2", testPassword, "bad-3", "bad-4", testPassword} {
		resp, _ := c.apiLoginFrom("192.0.2.10", "", "student3@example.edu", pw)
		want := http.StatusUnauthorized
		if pw == testPassword {
			want = http.StatusOK
		}
		if resp.StatusCode != want {
			t.Fatalf("student3 with %q: %d, want %d", pw, resp.StatusCode, want)
		}
	}

	// Per client: five failures over five accounts pause the client, even
	// for a sixth account with the right password, whatever it writes into
	// X-Forwarded-For itself.
	for i := range 5 {
		email := "student" + strconv.Itoa(10+i) + "@example.edu"
		if resp, _ := c.apiLoginFrom("203.0.113.50", "10.9.9."+strconv.Itoa(i), email, "wrong-password"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("client failure %d: %d, want 401", i+1, resp.StatusCode)
		}
	}
	resp, body = cb.apiLoginFrom("203.0.113.50", "192.0.2.77", "student20@example.edu", testPassword)
	if resp.StatusCode != http.StatusTooManyRequests || body["scope"] != scopeClient || !strings.Contains(body["error"].(string), "from your network") {
		t.Errorf("paused client with a spoofed header: %d %v, want 429 for the client", resp.StatusCode, body)
	}
	// The same account from another client is fine.
	if resp, _ := c.apiLoginFrom("203.0.113.51", "", "student20@example.edu", testPassword); resp.StatusCode != http.StatusOK {
		t.Errorf("the same account from another client: %d, want 200", resp.StatusCode)
	}

	// Correct logins never count against a client: a campus NAT with many
	// students behind one address is not paused by its own successes.
	for i := range 12 {
		email := "student" + strconv.Itoa(25+i) + "@example.edu"
		if resp, _ := c.apiLoginFrom("192.0.2.200", "", email, testPassword); resp.StatusCode != http.StatusOK {
			t.Fatalf("NAT login %d: %d, want 200", i+1, resp.StatusCode)
		}
	}
	// The table holds no email address: account keys are hashes.
	var plain int
	if err := db.Pool().QueryRow(context.Background(), `SELECT count(*) FROM login_throttle WHERE key LIKE '%@%'`).Scan(&plain); err != nil || plain != 0 {
		t.Errorf("throttle rows with an email in the key: %d (%v), want 0", plain, err)
	}
}

// TestLoginThrottleBurst sends many wrong passwords for one account at
// once: counting before the check means only the limit's worth of them
// reach bcrypt, however many arrive together.
func TestLoginThrottleBurst(t *testing.T) {
	pg := startPG(t)
	log := testLogger(t)
	db := seededDB(t, pg, log)
	s, err := NewServer(ServerConfig{DB: db, Logger: log, Throttle: ThrottlePolicy{AccountLimit: 4, ClientLimit: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	base := newHTTPTestServer(t, s)
	const n = 24
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := `{"email":"student5@example.edu","password":"guess-` + strconv.Itoa(i) + `"}`
			req, _ := http.NewRequest("POST", base+"/api/login", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(codes)
	got := map[int]int{}
	for c := range codes {
		got[c]++
	}
	if got[http.StatusUnauthorized] != 4 || got[http.StatusTooManyRequests] != n-4 {
		t.Errorf("status counts = %v, want 4×401 and %d×429", got, n-4)
	}
	if pc := s.passwordChecks.Load(); pc != 4 {
		t.Errorf("password checks = %d, want 4", pc)
	}
}

// TestThrottleTableBounded checks that expired counters are swept by later
// logins, without a background job.
func TestThrottleTableBounded(t *testing.T) {
	pg := startPG(t)
	log := testLogger(t)
	db := seededDB(t, pg, log)
	ctx := context.Background()
	if _, err := db.Pool().Exec(ctx, `INSERT INTO login_throttle (scope, key, attempts, window_start)
		SELECT 'account', 'old-' || i, 3, now() - interval '1 hour' FROM generate_series(1, 120) i`); err != nil {
		t.Fatal(err)
	}
	_, hs := newTestServer(t, db)
	c := newClient(t, hs.URL)
	for range 3 {
		c.apiLogin("student1@example.edu", testPassword)
	}
	var old int
	if err := db.Pool().QueryRow(ctx, `SELECT count(*) FROM login_throttle WHERE key LIKE 'old-%'`).Scan(&old); err != nil {
		t.Fatal(err)
	}
	if old != 0 {
		t.Errorf("expired counters left after 3 logins: %d, want 0 (50 swept per login)", old)
	}
}

// TestHSTS checks issue 9's "no HSTS header from the app".
func TestHSTS(t *testing.T) {
	pg := startPG(t)
	db := seededDB(t, pg, testLogger(t))
	_, hs := newTestServer(t, db)
	c := newClient(t, hs.URL)
	for _, p := range []string{"/login", "/healthz", "/static/style.css", "/no-such-page", "/courses", "/favicon.ico"} {
		resp, _ := c.get(p)
		if got := resp.Header.Get("Strict-Transport-Security"); got != "max-age=31536000" {
			t.Errorf("GET %s: Strict-Transport-Security = %q, want max-age=31536000", p, got)
		}
	}
}

// TestLoginCSRFCookieCleared checks issue 9's "the login CSRF cookie is
// cleared with Path=/ but was set with Path=/login": a browser keeps a
// cookie per path, so only a deletion with the same path removes it.
func TestLoginCSRFCookieCleared(t *testing.T) {
	pg := startPG(t)
	db := seededDB(t, pg, testLogger(t))
	_, hs := newTestServer(t, db)
	c := newClient(t, hs.URL)
	resp, page := c.get("/login")
	var set *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == loginCSRFCookie {
			set = ck
		}
	}
	if set == nil || set.Path != "/login" {
		t.Fatalf("login CSRF cookie = %+v, want one with Path=/login", set)
	}
	resp, _ = c.postForm("/login", url.Values{"email": {"student1@example.edu"}, "password": {testPassword}, "csrf_token": {formToken(t, page)}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	var cleared *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == loginCSRFCookie {
			cleared = ck
		}
	}
	if cleared == nil || cleared.MaxAge >= 0 || cleared.Path != set.Path {
		t.Errorf("login CSRF cookie after login = %+v, want deleted (Max-Age<0) with Path=%s", cleared, set.Path)
	}
}
