package edge

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/cloudfront/sign"

	"github.com/haven-platform/haven/internal/clock"
)

// TestSigningKey makes a key pair, derives its ID and public half, and
// checks that a URL the AWS SDK signs with the private half passes an edge
// that trusts the public half, as the region wires them.
func TestSigningKey(t *testing.T) {
	priv, err := NewSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(priv), "-----BEGIN PRIVATE KEY-----") {
		t.Fatalf("private key is not PKCS #8 PEM: %.40q", priv)
	}
	k, err := ParseSigningKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^K[A-Z2-7]{13}$`).MatchString(k.ID) {
		t.Errorf("key ID %q is not CloudFront-shaped", k.ID)
	}
	if again, _ := ParseSigningKey(priv); again.ID != k.ID || string(again.PublicPEM) != string(k.PublicPEM) {
		t.Error("the ID or public key is not stable")
	}
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer origin.Close()
	clk := clock.NewFake(time.Now())
	e, err := New(Config{Clock: clk, Origins: []Origin{{ID: "o", URL: origin.URL}},
		DefaultBehavior: Behavior{Target: "o", TrustedKeyGroups: []string{"g"}},
		KeyGroups:       []KeyGroup{{ID: "g", PublicKeys: []PublicKey{{ID: k.ID, PEM: k.PublicPEM}}}}})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := sign.LoadPEMPrivKeyPKCS8AsSigner(strings.NewReader(string(priv)))
	if err != nil {
		t.Fatal(err)
	}
	url, err := sign.NewURLSigner(k.ID, signer).Sign("http://edge.test/x", clk.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest("GET", url, nil))
	if rec.Code != 200 {
		t.Errorf("URL signed with the made key: %d %s", rec.Code, rec.Body)
	}
	other, _ := NewSigningKey()
	osigner, _ := sign.LoadPEMPrivKeyPKCS8AsSigner(strings.NewReader(string(other)))
	url, _ = sign.NewURLSigner(k.ID, osigner).Sign("http://edge.test/x", clk.Now().Add(time.Minute))
	rec = httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest("GET", url, nil))
	if rec.Code != http.StatusForbidden {
		t.Errorf("URL signed with another key under this ID: %d, want 403", rec.Code)
	}
}

func TestParseSigningKeyRefuses(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	for name, in := range map[string][]byte{
		"not PEM":    []byte("hello"),
		"public key": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1}}),
		"ECDSA":      pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}),
		"RSA 1024":   pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(small)}),
	} {
		if _, err := ParseSigningKey(in); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
