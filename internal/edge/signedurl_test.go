package edge

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/cloudfront/sign"
)

// signedEdge serves /materials/* from the origin, signed URLs required with
// key group "teachers" (rsaKey as K1, ecKey as K2; rsaKey2 is untrusted).
func signedEdge(t *testing.T) (*Edge, *origin, func(time.Duration)) {
	testKeys(t)
	o := newOrigin(t, static("%PDF-1.7 course material", "Content-Type", "application/pdf", "Cache-Control", "max-age=3600"))
	e, clk := newTestEdge(t, o, func(c *Config) {
		c.KeyGroups = []KeyGroup{{ID: "teachers", PublicKeys: []PublicKey{
			{ID: "K1", PEM: pemPublic(t, &rsaKey.PublicKey)},
			{ID: "K2", PEM: pemPublic(t, &ecKey.PublicKey)},
		}}}
		b := cachedBehavior("/materials/*")
		b.TrustedKeyGroups = []string{"teachers"}
		c.Behaviors = append(c.Behaviors, b)
	})
	return e, o, clk.Advance
}

const base = "http://example.com/materials/course-7/week1.pdf"

func sdkSigned(t *testing.T, keyID string, key crypto.Signer, u string, expires time.Time) string {
	t.Helper()
	s, err := sign.NewURLSigner(keyID, key).Sign(u, expires)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sdkPolicy(t *testing.T, keyID string, key crypto.Signer, u string, p *sign.Policy) string {
	t.Helper()
	s, err := sign.NewURLSigner(keyID, key).SignWithPolicy(u, p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func customPolicy(resource string, expires time.Time, mod func(*sign.Condition)) *sign.Policy {
	p := &sign.Policy{Statements: []sign.Statement{{Resource: resource, Condition: sign.Condition{DateLessThan: sign.NewAWSEpochTime(expires)}}}}
	if mod != nil {
		mod(&p.Statements[0].Condition)
	}
	return p
}

// TestSignedURLs checks URLs signed by the AWS SDK's CloudFront signer, as
// the app makes them, and tampered, expired and foreign ones.
func TestSignedURLs(t *testing.T) {
	e, o, _ := signedEdge(t)
	exp := epoch.Add(time.Hour)
	wildcard := customPolicy("http://example.com/materials/course-7/*", exp, nil)
	tests := []struct {
		name   string
		url    string
		remote string
		cookie []*http.Cookie
		status int
		reason string
	}{
		{name: "canned RSA", url: sdkSigned(t, "K1", rsaKey, base, exp), status: 200},
		{name: "canned with own query", url: sdkSigned(t, "K1", rsaKey, base+"?lang=en&v=2", exp), status: 200},
		{name: "canned ECDSA", url: sdkSigned(t, "K2", ecKey, base, exp), status: 200},
		{name: "custom exact", url: sdkPolicy(t, "K1", rsaKey, base, customPolicy(base, exp, nil)), status: 200},
		{name: "custom wildcard", url: sdkPolicy(t, "K1", rsaKey, base, wildcard), status: 200},
		{name: "custom wildcard, other file in it", url: strings.Replace(sdkPolicy(t, "K1", rsaKey, base, wildcard), "week1", "week2", 1), status: 200},
		{name: "custom wildcard, file outside it", url: strings.Replace(sdkPolicy(t, "K1", rsaKey, base, wildcard), "course-7", "course-8", 1), status: 403, reason: "Resource does not match"},
		{name: "custom IP allowed", url: sdkPolicy(t, "K1", rsaKey, base, customPolicy(base, exp, func(c *sign.Condition) {
			c.IPAddress = &sign.IPAddress{SourceIP: "192.0.2.0/24"}
		})), status: 200},
		{name: "custom IP refused", url: sdkPolicy(t, "K1", rsaKey, base, customPolicy(base, exp, func(c *sign.Condition) {
			c.IPAddress = &sign.IPAddress{SourceIP: "198.51.100.7/32"}
		})), status: 403, reason: "allows only 198.51.100.7/32"},
		{name: "custom IPv6 client refused", remote: "[2001:db8::1]:4000", url: sdkPolicy(t, "K1", rsaKey, base, customPolicy(base, exp, func(c *sign.Condition) {
			c.IPAddress = &sign.IPAddress{SourceIP: "192.0.2.0/24"}
		})), status: 403, reason: "allows only"},
		{name: "custom not yet valid", url: sdkPolicy(t, "K1", rsaKey, base, customPolicy(base, exp, func(c *sign.Condition) {
			c.DateGreaterThan = sign.NewAWSEpochTime(epoch.Add(time.Minute))
		})), status: 403, reason: "valid only after"},
		{name: "custom started", url: sdkPolicy(t, "K1", rsaKey, base, customPolicy(base, exp, func(c *sign.Condition) {
			c.DateGreaterThan = sign.NewAWSEpochTime(epoch.Add(-time.Minute))
		})), status: 200},
		{name: "canned expired", url: sdkSigned(t, "K1", rsaKey, base, epoch.Add(-time.Second)), status: 403, reason: "expired"},
		{name: "canned expiring now", url: sdkSigned(t, "K1", rsaKey, base, epoch), status: 403, reason: "expired"},
		{name: "custom expired", url: sdkPolicy(t, "K1", rsaKey, base, customPolicy(base, epoch.Add(-time.Second), nil)), status: 403, reason: "expired"},
		{name: "untrusted key under a trusted id", url: sdkSigned(t, "K1", rsaKey2, base, exp), status: 403, reason: "does not match"},
		{name: "unknown key id", url: sdkSigned(t, "K9", rsaKey, base, exp), status: 403, reason: `Key-Pair-Id "K9"`},
		{name: "expiry moved", url: strings.Replace(sdkSigned(t, "K1", rsaKey, base, exp), "Expires=", "Expires=1", 1), status: 403, reason: "does not match"},
		{name: "path changed", url: strings.Replace(sdkSigned(t, "K1", rsaKey, base, exp), "week1", "week2", 1), status: 403, reason: "does not match"},
		{name: "query added", url: strings.Replace(sdkSigned(t, "K1", rsaKey, base, exp), "?", "?admin=1&", 1), status: 403, reason: "does not match"},
		{name: "signature flipped", url: flipSignature(sdkSigned(t, "K1", rsaKey, base, exp)), status: 403, reason: "does not match"},
		{name: "policy swapped", url: swapParam(sdkPolicy(t, "K1", rsaKey, base, customPolicy(base, exp, nil)), "Policy",
			sdkPolicyParam(t, customPolicy(base, exp.Add(24*time.Hour), nil))), status: 403, reason: "does not match"},
		{name: "no signature at all", url: base, status: 403, reason: "missing signature"},
		{name: "no key id", url: dropParam(sdkSigned(t, "K1", rsaKey, base, exp), "Key-Pair-Id"), status: 403, reason: "missing Key-Pair-Id"},
		{name: "no Signature", url: dropParam(sdkSigned(t, "K1", rsaKey, base, exp), "Signature"), status: 403, reason: "missing Signature"},
		{name: "garbage base64", url: base + "?Expires=1900000000&Signature=%%%&Key-Pair-Id=K1", status: 403, reason: "not a valid query value"},
		{name: "bad base64 alphabet", url: base + "?Expires=1900000000&Signature=ab+c&Key-Pair-Id=K1", status: 403, reason: "not CloudFront base64"},
		{name: "duplicate Signature", url: sdkSigned(t, "K1", rsaKey, base, exp) + "&Signature=AAAA", status: 403, reason: "more than once"},
		{name: "Expires and Policy", url: sdkSigned(t, "K1", rsaKey, base, exp) + "&Policy=e30_", status: 403, reason: "both Expires and Policy"},
		{name: "Expires not a number", url: base + "?Expires=tomorrow&Signature=AAAA&Key-Pair-Id=K1", status: 403, reason: "Unix time"},
		{name: "unknown hash algorithm", url: sdkSigned(t, "K1", rsaKey, base, exp) + "&Hash-Algorithm=MD5", status: 403, reason: "not supported"},
		{name: "signed cookies (SDK)", url: base, cookie: sdkCookies(t, base, exp), status: 200},
		{name: "signed cookies, other path", url: strings.Replace(base, "week1", "week2", 1), cookie: sdkCookies(t, base, exp), status: 403, reason: "Resource does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httpRequest(t, tt.url)
			if tt.remote != "" {
				r.RemoteAddr = tt.remote
			}
			for _, c := range tt.cookie {
				r.AddCookie(c)
			}
			w := serve(e, r)
			if w.Code != tt.status {
				t.Fatalf("status = %d, want %d; body %s", w.Code, tt.status, w.Body)
			}
			if tt.status == 403 {
				if !strings.Contains(w.Body.String(), tt.reason) {
					t.Errorf("403 body %q does not say %q", w.Body, tt.reason)
				}
				if ct := w.Header().Get("Content-Type"); ct != "text/xml" {
					t.Errorf("Content-Type = %q, want text/xml", ct)
				}
			}
		})
	}
	if n := o.count(); n != 2 {
		// Accepted URLs name two objects (week1, week2) and differ otherwise
		// only in their own query strings (not in the key) and in signing
		// values (never in the key).
		t.Errorf("origin requests = %d, want 2 (one per object, whatever the signature)", n)
	}
	if last := o.last(); last.URL.RawQuery != "" {
		t.Errorf("origin got query %q; signing parameters must not reach the origin", last.URL.RawQuery)
	}
	if s := e.Stats(); s.Denied == 0 {
		t.Errorf("Denied counter not incremented: %+v", s)
	}
}

// TestSignedURLSHA256 checks Hash-Algorithm=SHA256, which the SDK's signer
// does not make: the URL is built as CloudFront documents it.
func TestSignedURLSHA256(t *testing.T) {
	e, _, _ := signedEdge(t)
	exp := epoch.Add(time.Hour).Unix()
	doc := cannedPolicy(base, exp)
	sum := sha256.Sum256(doc)
	sig, err := rsa.SignPKCS1v15(rand.Reader, rsaKey, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	u := base + "?Expires=" + itoa(exp) + "&Signature=" + encodeCF(sig) + "&Key-Pair-Id=K1"
	if w := serve(e, httpRequest(t, u+"&Hash-Algorithm=SHA256")); w.Code != 200 {
		t.Fatalf("SHA256 URL: status %d, body %s", w.Code, w.Body)
	}
	if w := serve(e, httpRequest(t, u)); w.Code != 403 {
		t.Fatalf("SHA256 signature verified as SHA1: status %d", w.Code)
	}
}

// TestSignedURLPolicyConditions refuses, loudly, custom policies with
// anything the edge does not enforce, signed with a trusted key.
func TestSignedURLPolicyConditions(t *testing.T) {
	e, _, _ := signedEdge(t)
	exp := itoa(epoch.Add(time.Hour).Unix())
	tests := []struct{ policy, reason string }{
		{`{"Statement":[{"Resource":"` + base + `","Condition":{"DateLessThan":{"AWS:EpochTime":` + exp + `},"StringLike":{"aws:Referer":"x"}}}]}`, `"StringLike", which the edge does not enforce`},
		{`{"Statement":[{"Resource":"` + base + `","Condition":{"DateLessThan":{"AWS:EpochTime":"` + exp + `"}}}]}`, "unquoted integer"},
		{`{"Statement":[{"Resource":"` + base + `","Condition":{"DateGreaterThan":{"AWS:EpochTime":1}}}]}`, "DateLessThan is required"},
		{`{"Statement":[{"Resource":"` + base + `","Condition":{"DateLessThan":{"AWS:EpochTime":` + exp + `}}},{"Resource":"*","Condition":{"DateLessThan":{"AWS:EpochTime":` + exp + `}}}]}`, "exactly one statement"},
		{`{"Statement":[{"resource":"` + base + `","Condition":{"DateLessThan":{"AWS:EpochTime":` + exp + `}}}]}`, `"resource"`},
		{`{"Statement":[{"Resource":"ftp://x/*","Condition":{"DateLessThan":{"AWS:EpochTime":` + exp + `}}}]}`, "must start with"},
		{`{"Statement":[{"Resource":"` + base + `","Condition":{"DateLessThan":{"AWS:EpochTime":` + exp + `},"IpAddress":{"AWS:SourceIp":"192.0.2.7"}}}]}`, "CIDR"},
		{`{"Statement":[{"Resource":"` + base + `","Condition":{"DateLessThan":{"AWS:EpochTime":` + exp + `},"DateLessThan":{"AWS:EpochTime":1}}}]}`, "twice"},
		{`{"Statement":[{"Resource":"` + base + `","Condition":{"DateLessThan":{"AWS:EpochTime":` + exp + `}}}]} {}`, "unexpected data"},
	}
	for _, tt := range tests {
		sum := sha1Sum([]byte(tt.policy))
		sig, err := rsa.SignPKCS1v15(rand.Reader, rsaKey, crypto.SHA1, sum)
		if err != nil {
			t.Fatal(err)
		}
		u := base + "?Policy=" + encodeCF([]byte(tt.policy)) + "&Signature=" + encodeCF(sig) + "&Key-Pair-Id=K1"
		w := serve(e, httpRequest(t, u))
		if w.Code != 403 || !strings.Contains(w.Body.String(), tt.reason) {
			t.Errorf("policy %s: status %d body %s, want 403 saying %q", tt.policy, w.Code, w.Body, tt.reason)
		}
	}
}

// TestCannedPolicyMatchesSDK pins the policy the edge rebuilds for a canned
// URL to the bytes the SDK signs.
func TestCannedPolicyMatchesSDK(t *testing.T) {
	for _, res := range []string{base, base + "?a=1&b=<x>&c=%20", `http://h/q"uote\`} {
		exp := epoch.Add(time.Hour)
		_, b64, err := sign.NewCannedPolicy(res, exp).Sign(fakeSigner{})
		if err != nil {
			t.Fatal(err)
		}
		signed, err := decodeCF(string(b64))
		if err != nil {
			t.Fatal(err)
		}
		if want := cannedPolicy(res, exp.Unix()); string(signed) != string(want) {
			t.Errorf("canned policy for %q:\n edge %s\n  sdk %s", res, want, signed)
		}
	}
}

// FuzzSignedURL feeds arbitrary query strings and cookies through the
// parser and verifier: no panic, and never an accepted request.
func FuzzSignedURL(f *testing.F) {
	testKeys(f)
	exp := epoch.Add(time.Hour)
	good, err := sign.NewURLSigner("K1", rsaKey).Sign(base, exp)
	if err != nil {
		f.Fatal(err)
	}
	custom, err := sign.NewURLSigner("K1", rsaKey).SignWithPolicy(base, customPolicy(base, exp, nil))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{good, custom} {
		u, _ := url.Parse(s)
		f.Add(u.RawQuery, "")
	}
	f.Add("Expires=1&Signature=&Key-Pair-Id=K1", "CloudFront-Policy=e30_")
	f.Add("Policy=eyJTdGF0ZW1lbnQiOlt7fV19&Signature=AA__&Key-Pair-Id=K1&Hash-Algorithm=SHA256", "")
	f.Add("%ZZ=1&Expires=%", "CloudFront-Key-Pair-Id=K1; CloudFront-Signature=~~")
	keys := keyring{"K1": &rsaKey.PublicKey, "K2": &ecKey.PublicKey}
	f.Fuzz(func(t *testing.T, query, cookie string) {
		sp, rest, err := splitSigned(query)
		if err == nil && !sp.any && cookie != "" {
			r, _ := http.NewRequest("GET", "/", nil)
			r.Header.Set("Cookie", cookie)
			sp, err = signedCookies(r)
		}
		if err != nil {
			var d *DeniedError
			if !errors.As(err, &d) {
				t.Fatalf("error %v is not a *DeniedError", err)
			}
			return
		}
		err = verifySigned(sp, keys, "http://example.com/materials/x.pdf?"+rest, netip.MustParseAddr("192.0.2.1"), epoch)
		if err == nil {
			t.Fatalf("accepted a forged request: query %q cookie %q", query, cookie)
		}
	})
}

// FuzzPolicy feeds arbitrary JSON to the custom-policy parser.
func FuzzPolicy(f *testing.F) {
	f.Add(`{"Statement":[{"Resource":"https://h/*","Condition":{"DateLessThan":{"AWS:EpochTime":1900000000},"IpAddress":{"AWS:SourceIp":"192.0.2.0/24"}}}]}`)
	f.Add(`{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":1}}}]}`)
	f.Add(`{"Statement":[{"Resource":"*","Condition":{"DateLessThan":{"AWS:EpochTime":1e3}}}]}`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, doc string) {
		p, err := parsePolicy([]byte(doc))
		if err != nil {
			var d *DeniedError
			if !errors.As(err, &d) {
				t.Fatalf("error %v is not a *DeniedError", err)
			}
			return
		}
		if p.notAfter <= 0 {
			t.Fatalf("accepted a policy without DateLessThan: %s", doc)
		}
		_ = p.allows("https://h/x", netip.MustParseAddr("192.0.2.1"), epoch)
	})
}

// helpers

func httpRequest(t *testing.T, u string) *http.Request {
	t.Helper()
	r, err := http.NewRequest("GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.RequestURI = r.URL.RequestURI()
	r.RemoteAddr = "192.0.2.1:1234"
	return r
}

func flipSignature(u string) string {
	i := strings.Index(u, "Signature=") + len("Signature=") + 5
	c := byte('A')
	if u[i] == 'A' {
		c = 'B'
	}
	return u[:i] + string(c) + u[i+1:]
}

func dropParam(u, name string) string {
	pre, q, _ := strings.Cut(u, "?")
	var keep []string
	for p := range strings.SplitSeq(q, "&") {
		if !strings.HasPrefix(p, name+"=") {
			keep = append(keep, p)
		}
	}
	return pre + "?" + strings.Join(keep, "&")
}

func swapParam(u, name, value string) string {
	pre, q, _ := strings.Cut(u, "?")
	parts := strings.Split(q, "&")
	for i, p := range parts {
		if strings.HasPrefix(p, name+"=") {
			parts[i] = name + "=" + value
		}
	}
	return pre + "?" + strings.Join(parts, "&")
}

func sdkPolicyParam(t *testing.T, p *sign.Policy) string {
	_, b64, err := p.Sign(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(b64)
}

func sdkCookies(t *testing.T, u string, exp time.Time) []*http.Cookie {
	cs, err := sign.NewCookieSigner("K1", rsaKey).Sign(u, exp)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func encodeCF(b []byte) string {
	return strings.NewReplacer("+", "-", "=", "_", "/", "~").Replace(base64.StdEncoding.EncodeToString(b))
}

type fakeSigner struct{}

func (fakeSigner) Public() crypto.PublicKey { return nil }
func (fakeSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return []byte("sig"), nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func sha1Sum(b []byte) []byte {
	s := sha1.Sum(b)
	return s[:]
}

func serve(e *Edge, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	e.ServeHTTP(w, r)
	return w
}
