package lb

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// albTLS12 are the TLS 1.2 suites of ELBSecurityPolicy-TLS13-1-2-2021-06,
// by their IANA names as Go spells them (the policy's CBC-SHA384 pair has
// no Go constant and cannot be offered).
var albTLS12 = []string{
	"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
	"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
	"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
	"TLS_RSA_WITH_AES_128_GCM_SHA256", "TLS_RSA_WITH_AES_128_CBC_SHA256", "TLS_RSA_WITH_AES_256_GCM_SHA384",
}

// handshake offers exactly suite at TLS 1.2 (or only version vers, suite
// 0 meaning Go's defaults) and reports whether the listener accepts.
func handshake(t *testing.T, l *LB, clientTLS *tls.Config, vers, suite uint16) error {
	t.Helper()
	c := clientTLS.Clone()
	c.MinVersion, c.MaxVersion = vers, vers
	if suite != 0 {
		c.CipherSuites = []uint16{suite}
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", strings.TrimPrefix(l.HTTPSURL(), "https://"), c)
	if err == nil {
		conn.Close()
	}
	return err
}

// The listener speaks TLS 1.2 and 1.3 only, and in TLS 1.2 only suites of
// the ALB policy: a client offering only CBC with SHA-1 (or anything else
// outside the list) gets no connection.
func TestListenerFollowsTheALBSecurityPolicy(t *testing.T) {
	cfg := testConfig(t)
	var clientTLS *tls.Config
	cfg.TLS, clientTLS = testTLS(t)
	cfg.TLS.MinVersion = tls.VersionTLS10 // the listener's policy wins over a lax config
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Stop(t.Context()) })

	if err := handshake(t, l, clientTLS, tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA); err == nil {
		t.Error("a client offering only ECDHE-ECDSA-AES128-SHA (CBC, SHA-1) was served")
	}
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		if err := handshake(t, l, clientTLS, v, 0); err == nil {
			t.Errorf("%s was accepted", tls.VersionName(v))
		}
	}
	if err := handshake(t, l, clientTLS, tls.VersionTLS13, 0); err != nil {
		t.Errorf("TLS 1.3: %v", err)
	}
	var accepted []string
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		if !slices.Contains(s.SupportedVersions, tls.VersionTLS12) {
			continue
		}
		if handshake(t, l, clientTLS, tls.VersionTLS12, s.ID) == nil {
			accepted = append(accepted, s.Name)
			if !slices.Contains(albTLS12, s.Name) {
				t.Errorf("TLS 1.2 suite %s accepted: not in %s", s.Name, SecurityPolicy)
			}
		}
	}
	// The certificate is ECDSA: both ECDHE-ECDSA GCM suites must work.
	for _, want := range []string{"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"} {
		if !slices.Contains(accepted, want) {
			t.Errorf("%s refused; accepted %v", want, accepted)
		}
	}
}

// Every HTTPS response carries HSTS, the LB's own errors included; a
// target's own header is kept, not doubled.
func TestHSTSOnEveryHTTPSResponse(t *testing.T) {
	l, c := startLB(t, nil)
	resp, err := c.Get(l.HTTPSURL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Strict-Transport-Security") != DefaultHSTS {
		t.Errorf("503 with no targets: HSTS %q, want %q", resp.Header.Get("Strict-Transport-Security"), DefaultHSTS)
	}

	plain := newBackend(t, "plain", nil)
	own := newBackend(t, "own", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Strict-Transport-Security", "max-age=60; includeSubDomains")
		io.WriteString(w, "own")
	})
	register(t, l, "plain", "za", plain.addr())
	waitState(t, l, "plain", StateHealthy)
	resp, err = c.Get(l.HTTPSURL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Values("Strict-Transport-Security"); !slices.Equal(got, []string{DefaultHSTS}) {
		t.Errorf("proxied response: HSTS %q, want [%q]", got, DefaultHSTS)
	}
	if err := l.Deregister(t.Context(), "plain"); err != nil {
		t.Fatal(err)
	}
	register(t, l, "own", "za", own.addr())
	waitState(t, l, "own", StateHealthy)
	resp, err = c.Get(l.HTTPSURL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Values("Strict-Transport-Security"); !slices.Equal(got, []string{"max-age=60; includeSubDomains"}) {
		t.Errorf("target with its own HSTS: %q, want only the target's", got)
	}
}

// The 502 an LB generates names nothing internal, as ALB's: no target id,
// no address, no cause. The access log keeps the reason for the operator.
func TestErrorBodiesNameNothingInternal(t *testing.T) {
	var logBuf syncBuffer
	l, c := startLB(t, func(cfg *Config) { cfg.AccessLog = &logBuf })
	id := "i-0123456789abcdef0"
	// A target that resets every request: a 502 from the LB.
	b := newBackend(t, id, func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
		}
	})
	register(t, l, id, "za", b.addr())
	waitState(t, l, id, StateHealthy)
	resp, err := c.Post(l.HTTPSURL()+"/x", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
	if string(body) != errorPage(http.StatusBadGateway) || !strings.Contains(string(body), "<h1>502 Bad Gateway</h1>") {
		t.Errorf("502 body = %q, want ALB's page", body)
	}
	host, port, _ := net.SplitHostPort(b.addr())
	for _, internal := range []string{id, host + ":" + port, port, "target", "reset", "connection"} {
		if strings.Contains(string(body), internal) {
			t.Errorf("502 body names %q: %q", internal, body)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logBuf.String(), id) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(logBuf.String(), id) {
		t.Errorf("the access log lost the reason: %s", logBuf.String())
	}
}
