package ledger

import (
	"reflect"
	"testing"
	"time"
)

func ids(ids ...string) map[string]bool {
	m := map[string]bool{}
	for _, id := range ids {
		m[id] = true
	}
	return m
}

func TestCompare(t *testing.T) {
	tests := []struct {
		name    string
		ops     []Op
		present map[string]bool
		want    Report // Breaches compared by problem only
		reasons []string
	}{
		{"acked and present", []Op{{ID: "a", Outcome: OK}}, ids("a"), Report{OK: 1}, nil},
		{"acked and missing", []Op{{ID: "a", Outcome: OK}}, ids(), Report{OK: 1, AcknowledgedLost: 1}, []string{ProblemLost}},
		{"failed and absent", []Op{{ID: "f", Outcome: Fail}}, ids(), Report{Fail: 1}, nil},
		{"failed and present", []Op{{ID: "f", Outcome: Fail}}, ids("f"), Report{Fail: 1, FailPresent: 1}, []string{ProblemFailFound}},
		{"unknown and present", []Op{{ID: "u", Outcome: Unknown}}, ids("u"), Report{Unknown: 1, UnknownPresent: 1}, nil},
		{"unknown and absent", []Op{{ID: "u", Outcome: Unknown}}, ids(), Report{Unknown: 1}, nil},
		{"duplicate id", []Op{{ID: "a", Outcome: OK}, {ID: "a", Outcome: Fail}}, ids("a"), Report{OK: 1, Duplicates: 1}, []string{ProblemDuplicated}},
		{"row nobody recorded", []Op{{ID: "a", Outcome: OK}}, ids("a", "z"), Report{OK: 1, Unrecorded: 1}, nil},
		{"everything at once", []Op{{ID: "a", Outcome: OK}, {ID: "b", Outcome: OK}, {ID: "f", Outcome: Fail}, {ID: "u", Outcome: Unknown}},
			ids("a", "f"), Report{OK: 2, Fail: 1, Unknown: 1, AcknowledgedLost: 1, FailPresent: 1}, []string{ProblemLost, ProblemFailFound}},
		{"empty", nil, ids(), Report{}, nil},
	}
	for _, tt := range tests {
		got := Compare(tt.ops, tt.present)
		var reasons []string
		for _, b := range got.Breaches {
			reasons = append(reasons, b.Problem)
		}
		got.Breaches = nil
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: Compare = %+v, want %+v", tt.name, got, tt.want)
		}
		if len(reasons) != len(tt.reasons) {
			t.Errorf("%s: breaches %v, want %v", tt.name, reasons, tt.reasons)
			continue
		}
		for i := range reasons {
			if reasons[i] != tt.reasons[i] {
				t.Errorf("%s: breaches %v, want %v", tt.name, reasons, tt.reasons)
			}
		}
	}
}

func TestAtTime(t *testing.T) {
	T := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	ms := func(d int) time.Time { return T.Add(time.Duration(d) * time.Millisecond) }
	ops := []Op{
		{ID: "1", Outcome: OK, Start: ms(-20), End: ms(-10)},     // acknowledged before T: must be restored
		{ID: "2", Outcome: OK, Start: ms(-5), End: ms(0)},        // acknowledged exactly at T: must be restored
		{ID: "3", Outcome: OK, Start: ms(-5), End: ms(5)},        // in flight at T: either way
		{ID: "4", Outcome: OK, Start: ms(1), End: ms(2)},         // begun after T: must not be restored
		{ID: "5", Outcome: Unknown, Start: ms(-9), End: ms(-8)},  // outcome unknown: either way
		{ID: "6", Outcome: Fail, Start: ms(-9), End: ms(-8)},     // failed: never committed, must not be restored
		{ID: "7", Outcome: Unknown, Start: ms(10), End: ms(900)}, // begun after T, whatever its outcome: must not be restored
	}
	want := []Outcome{OK, OK, Unknown, Fail, Unknown, Fail, Fail}
	got := AtTime(ops, T)
	for i := range want {
		if got[i].Outcome != want[i] || got[i].ID != ops[i].ID {
			t.Errorf("op %s: %s, want %s", ops[i].ID, got[i].Outcome, want[i])
		}
	}
	if ops[3].Outcome != OK {
		t.Error("AtTime changed its input")
	}
	// The restore check, end to end on the restated history.
	if r := Compare(got, ids("1", "2", "3")); len(r.Breaches) != 0 || r.OK != 2 || r.Fail != 3 {
		t.Errorf("exact restore: %+v", r)
	}
	if r := Compare(got, ids("2", "4")); r.AcknowledgedLost != 1 || r.FailPresent != 1 {
		t.Errorf("restore missing 1 with 4 extra: %+v, want one lost and one present", r)
	}
}
