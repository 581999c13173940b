package drill

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/load"
	"github.com/haven-platform/haven/internal/pgha/ledger"
)

// startEnvelope begins a drill's envelope: its name, now, and the region
// and spec it runs against (from the daemon's status; empty when the
// status cannot be read).
func startEnvelope(ctx context.Context, c *api.Client, name string) Envelope {
	e := Envelope{Drill: name, StartedAt: time.Now().UTC(), HavenVersion: HavenVersion()}
	if st, err := c.Status(ctx); err == nil {
		e.Region, e.SpecSHA256 = st.Region, st.SpecSHA256
	}
	return e
}

// finish closes the envelope: the end time and the verdict from reasons.
func (e *Envelope) finish() {
	e.EndedAt = time.Now().UTC()
	e.Pass = len(e.Reasons) == 0
}

// mergeTimeline adds a recorder's timeline into a drill-wide one that
// started at start (seconds without load stay zero).
func mergeTimeline(into []load.Second, start time.Time, rec *Recorder) []load.Second {
	off := int(rec.start.Sub(start) / time.Second)
	for _, s := range rec.Timeline() {
		i := off + s.T
		if i < 0 {
			continue
		}
		for len(into) <= i {
			into = append(into, load.Second{T: len(into)})
		}
		cur := &into[i]
		cur.RPS += s.RPS
		cur.OK += s.OK
		for k, v := range s.Errors {
			if cur.Errors == nil {
				cur.Errors = map[string]int{}
			}
			cur.Errors[k] += v
		}
		cur.P50MS, cur.P95MS, cur.P99MS, cur.MaxMS = max(cur.P50MS, s.P50MS), max(cur.P95MS, s.P95MS), max(cur.P99MS, s.P99MS), max(cur.MaxMS, s.MaxMS)
	}
	return into
}

// writesTimeline is ledger writes second by second, by the second each
// started: commits attempted (rps), acknowledged (ok), failed ("fail")
// and unknown ("unknown", the connection lost during COMMIT), and their
// latency: the write outage of a failover, as a timeline.
func writesTimeline(ops []ledger.Op, start time.Time) []load.Second {
	var out []load.Second
	lat := map[int][]time.Duration{}
	for _, op := range ops {
		i := int(op.Start.Sub(start) / time.Second)
		if i < 0 || op.Start.IsZero() {
			continue
		}
		for len(out) <= i {
			out = append(out, load.Second{T: len(out)})
		}
		s := &out[i]
		s.RPS++
		switch op.Outcome {
		case ledger.OK:
			s.OK++
		default:
			if s.Errors == nil {
				s.Errors = map[string]int{}
			}
			s.Errors[strings.ToLower(string(op.Outcome))]++
		}
		if !op.End.IsZero() {
			lat[i] = append(lat[i], op.End.Sub(op.Start))
		}
	}
	for i := range out {
		l := lat[i]
		sort.Slice(l, func(a, b int) bool { return l[a] < l[b] })
		if len(l) > 0 {
			out[i].P50MS, out[i].P95MS, out[i].P99MS, out[i].MaxMS = ms(quantile(l, 0.5)), ms(quantile(l, 0.95)), ms(quantile(l, 0.99)), ms(l[len(l)-1])
		}
	}
	return out
}
