package headless

import (
	"errors"
	"strings"
	"testing"
)

func TestFindHonoursTheOverride(t *testing.T) {
	t.Setenv(EnvChromium, "/nonexistent/chromium")
	_, err := Find()
	if err == nil || !strings.Contains(err.Error(), EnvChromium) {
		t.Fatalf("Find with a bad %s = %v", EnvChromium, err)
	}
}

func TestFindSaysHowToInstall(t *testing.T) {
	t.Setenv(EnvChromium, "")
	t.Setenv("PATH", t.TempDir())
	_, err := Find()
	if !errors.Is(err, ErrNoChromium) || !strings.Contains(err.Error(), "apt-get install -y chromium") {
		t.Fatalf("Find without a browser = %v", err)
	}
}

func TestOptionsCarryTheRequiredFlags(t *testing.T) {
	if n := len(Options("/usr/bin/chromium", t.TempDir(), 800, 600)); n < 10 {
		t.Fatalf("%d options", n)
	}
}
