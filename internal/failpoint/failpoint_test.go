package failpoint

import (
	"errors"
	"testing"
)

func TestParseArmsPointsOnly(t *testing.T) {
	s, err := Parse(" store-after-temp-write, secrets-crash-after-setsecret=error ")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Armed(); len(got) != 2 {
		t.Fatalf("armed = %v", got)
	}
	for _, bad := range []string{"db-kill", "no-such-point", "store-after-temp-write=explode"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) succeeded", bad)
		}
	}
	if s, err := Parse(""); err != nil || len(s.Armed()) != 0 {
		t.Errorf("Parse(\"\") = %v, %v", s.Armed(), err)
	}
}

func TestHit(t *testing.T) {
	var nilSet *Set
	if err := nilSet.Hit(StoreAfterTempWrite); err != nil {
		t.Fatalf("nil set hit: %v", err)
	}
	s := NewSet()
	if err := s.Hit(StoreAfterTempWrite); err != nil {
		t.Fatalf("unarmed point hit: %v", err)
	}
	if err := s.Arm(StoreAfterTempWrite, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Hit(StoreAfterTempWrite); !errors.Is(err, ErrInjected) {
		t.Fatalf("armed point: err = %v, want ErrInjected", err)
	}
	crashed := 0
	s.kill = func() { crashed++ }
	if err := s.Arm(SecretsCrashAfterSetSecret, ""); err != nil {
		t.Fatal(err)
	}
	_ = s.Hit(SecretsCrashAfterSetSecret)
	if crashed != 1 {
		t.Fatalf("crash point ran the kill %d times, want 1 (its default action is crash)", crashed)
	}
	s.Disarm(StoreAfterTempWrite)
	if err := s.Hit(StoreAfterTempWrite); err != nil {
		t.Fatalf("disarmed point hit: %v", err)
	}
}

func TestCatalogNamesAreUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range Catalog {
		if seen[s.Name] || s.What == "" || (s.Kind == Point) != (s.Action != "") {
			t.Errorf("scenario %+v: duplicate, undocumented, or an action on a non-point", s)
		}
		seen[s.Name] = true
	}
}
