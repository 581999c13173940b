// Package events is the region's event log: a bounded in-memory ring mirrored to a JSON-lines file.
package events

import (
	"encoding/json"
	"io"
	"sync"
	"time"

	"github.com/haven-platform/haven/internal/api"
)

// Log records events from every component. It is safe for concurrent use.
type Log struct {
	mu   sync.Mutex
	seq  int64
	ring []api.Event
	max  int
	out  io.Writer
	now  func() time.Time
}

// New returns a log keeping the last max events and appending each to out (may be nil).
func New(out io.Writer, max int) *Log {
	if max <= 0 {
		max = 10000
	}
	return &Log{out: out, max: max, now: time.Now}
}

// Add records an event.
func (l *Log) Add(component, kind, subject, msg string) {
	l.Emit(api.Event{Component: component, Kind: kind, Subject: subject, Message: msg})
}

// Emit records e, numbering and dating it.
func (l *Log) Emit(e api.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	e.Seq, e.Time = l.seq, l.now().UTC()
	l.ring = append(l.ring, e)
	if len(l.ring) > l.max {
		l.ring = l.ring[len(l.ring)-l.max:]
	}
	if l.out != nil {
		b, _ := json.Marshal(e)
		_, _ = l.out.Write(append(b, '\n'))
	}
}

// Since returns the events with a sequence number above after.
func (l *Log) Since(after int64) []api.Event { return l.Query(api.EventQuery{After: after}) }

// Query returns the events q selects, oldest first.
func (l *Log) Query(q api.EventQuery) []api.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := []api.Event{}
	for _, e := range l.ring {
		if q.Match(e) {
			out = append(out, e)
		}
	}
	return out
}
