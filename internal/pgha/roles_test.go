package pgha

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
)

func TestSCRAMVerifier(t *testing.T) {
	pw := NewPassword()
	if len(pw) != 32 || strings.Trim(pw, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") != "" {
		t.Fatalf("password %d chars outside [A-Za-z0-9]", len(pw))
	}
	if NewPassword() == pw {
		t.Fatal("two passwords are equal")
	}
	v, err := SCRAMVerifier(pw)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(v, pw) {
		t.Fatal("verifier holds the plaintext")
	}
	// SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>, recomputed independently.
	head, keys, ok := strings.Cut(strings.TrimPrefix(v, "SCRAM-SHA-256$"), "$")
	iterS, saltB, ok2 := strings.Cut(head, ":")
	storedB, serverB, ok3 := strings.Cut(keys, ":")
	if !strings.HasPrefix(v, "SCRAM-SHA-256$") || !ok || !ok2 || !ok3 {
		t.Fatalf("verifier shape %q", v)
	}
	iter, _ := strconv.Atoi(iterS)
	salt, _ := base64.StdEncoding.DecodeString(saltB)
	salted, _ := pbkdf2.Key(sha256.New, pw, salt, iter, 32)
	m := hmac.New(sha256.New, salted)
	m.Write([]byte("Client Key"))
	stored := sha256.Sum256(m.Sum(nil))
	if got := base64.StdEncoding.EncodeToString(stored[:]); got != storedB {
		t.Errorf("StoredKey = %s, want %s", storedB, got)
	}
	m = hmac.New(sha256.New, salted)
	m.Write([]byte("Server Key"))
	if got := base64.StdEncoding.EncodeToString(m.Sum(nil)); got != serverB {
		t.Errorf("ServerKey = %s, want %s", serverB, got)
	}
}
