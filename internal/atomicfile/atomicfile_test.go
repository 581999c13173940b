package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFileReplacesAndSetsMode(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(p)
	st, _ := os.Stat(p)
	if string(got) != "new" || st.Mode().Perm() != 0o600 {
		t.Errorf("content %q mode %v, want new and 0600", got, st.Mode().Perm())
	}
	if left, _ := filepath.Glob(p + TempMarker + "*"); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
}

func TestFailpointLeavesOldContentAndTemp(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state.json")
	if err := WriteFile(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	crash := errors.New("crash")
	err := WriteFile(p, []byte("new"), 0o600, Options{BeforeRename: func() error { return crash }})
	if !errors.Is(err, crash) {
		t.Fatalf("err = %v, want the failpoint's", err)
	}
	if got, _ := os.ReadFile(p); string(got) != "old" {
		t.Errorf("content after a crash = %q, want old", got)
	}
	if left, _ := filepath.Glob(p + TempMarker + "*"); len(left) != 1 {
		t.Errorf("temp files = %v, want the one a crash leaves", left)
	}
}

func TestPrepareErrorRemovesTemp(t *testing.T) {
	p := filepath.Join(t.TempDir(), "conf")
	bad := errors.New("chown")
	if err := WriteFile(p, []byte("x"), 0o600, Options{Prepare: func(string) error { return bad }}); !errors.Is(err, bad) {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Errorf("file exists after a failed prepare")
	}
	if left, _ := filepath.Glob(p + TempMarker + "*"); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
}
