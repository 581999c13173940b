package version

import (
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	s := String()
	if s == "" || (Version == "" && !strings.HasPrefix(s, "dev")) {
		t.Fatalf("String() = %q", s)
	}
	if String() != s {
		t.Fatal("String is not stable")
	}
}
