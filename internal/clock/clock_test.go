package clock

import (
	"testing"
	"time"
)

var epoch = time.Date(2026, 11, 30, 7, 0, 0, 0, time.UTC)

func TestFakeAfterFiresOnlyWhenDue(t *testing.T) {
	f := NewFake(epoch)
	ch := f.After(10 * time.Second)
	f.Advance(9 * time.Second)
	select {
	case <-ch:
		t.Fatal("fired before it was due")
	default:
	}
	f.Advance(time.Second)
	select {
	case got := <-ch:
		if want := epoch.Add(10 * time.Second); !got.Equal(want) {
			t.Fatalf("fired at %v, want %v", got, want)
		}
	default:
		t.Fatal("did not fire when due")
	}
	if n := f.Waiters(); n != 0 {
		t.Fatalf("waiters after firing = %d, want 0", n)
	}
}

func TestFakeAfterNonPositiveFiresAtOnce(t *testing.T) {
	f := NewFake(epoch)
	select {
	case <-f.After(0):
	default:
		t.Fatal("After(0) did not fire at once")
	}
}

func TestFakeTickerTicksEachPeriodAndStops(t *testing.T) {
	f := NewFake(epoch)
	tk := f.NewTicker(time.Second)
	var got []time.Time
	for i := 0; i < 3; i++ {
		f.Advance(time.Second)
		got = append(got, <-tk.C())
	}
	for i, g := range got {
		if want := epoch.Add(time.Duration(i+1) * time.Second); !g.Equal(want) {
			t.Fatalf("tick %d at %v, want %v", i, g, want)
		}
	}
	tk.Stop()
	f.Advance(5 * time.Second)
	select {
	case <-tk.C():
		t.Fatal("tick after Stop")
	default:
	}
	if n := f.Waiters(); n != 0 {
		t.Fatalf("waiters after Stop = %d, want 0", n)
	}
}

func TestFakeTickerDropsTicksForSlowReader(t *testing.T) {
	f := NewFake(epoch)
	tk := f.NewTicker(time.Second)
	f.Advance(5 * time.Second) // nobody reads: one tick buffered, four dropped
	<-tk.C()
	select {
	case <-tk.C():
		t.Fatal("more than one buffered tick")
	default:
	}
	if now := f.Now(); !now.Equal(epoch.Add(5 * time.Second)) {
		t.Fatalf("now = %v", now)
	}
}

func TestFakeFiresInTimeOrder(t *testing.T) {
	f := NewFake(epoch)
	late := f.After(3 * time.Second)
	early := f.After(time.Second)
	f.Advance(3 * time.Second)
	e, l := <-early, <-late
	if !e.Before(l) {
		t.Fatalf("early fired at %v, late at %v", e, l)
	}
}

func TestBlockUntil(t *testing.T) {
	f := NewFake(epoch)
	go func() { <-f.After(time.Minute) }()
	if !f.BlockUntil(1, 5*time.Second) {
		t.Fatal("BlockUntil did not see the waiter")
	}
	if f.BlockUntil(2, 10*time.Millisecond) {
		t.Fatal("BlockUntil reported a waiter that does not exist")
	}
	f.Advance(time.Minute)
}

func TestOr(t *testing.T) {
	if Or(nil) != Real {
		t.Fatal("Or(nil) is not Real")
	}
	f := NewFake(epoch)
	if Or(f) != Clock(f) {
		t.Fatal("Or(f) is not f")
	}
}

func TestOffsetShiftsNowOnly(t *testing.T) {
	var o Offset
	if d := o.Now().Sub(time.Now()); d < -time.Second || d > time.Second {
		t.Fatalf("zero Offset is %v off the wall clock", d)
	}
	o.Advance(time.Hour)
	if d := o.Now().Sub(time.Now()); d < 59*time.Minute || d > 61*time.Minute {
		t.Fatalf("after Advance(1h) Now is %v ahead, want about 1h", d)
	}
	start := time.Now()
	<-o.After(20 * time.Millisecond)
	if waited := time.Since(start); waited > 10*time.Second {
		t.Fatalf("After waited %v", waited)
	}
	tk := o.NewTicker(time.Millisecond)
	<-tk.C()
	tk.Stop()
	o.Advance(-2 * time.Hour)
	if d := o.Now().Sub(time.Now()); d > -59*time.Minute {
		t.Fatalf("after Advance(-2h) Now is %v off, want about -1h", d)
	}
}
