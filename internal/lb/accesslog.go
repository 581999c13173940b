package lb

import (
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// DefaultProcessAccessLogFlush is how long a load balancer process lets
// access-log lines wait to be written together (Config.AccessLogFlush).
const DefaultProcessAccessLogFlush = 100 * time.Millisecond

// accessLogBatch is the size at which pending lines are written at once.
const accessLogBatch = 32 << 10

// accessLog writes access-log lines (accessEntry as JSON, one per line),
// encoded by hand into a reused buffer rather than through reflection,
// and, with a flush interval, in batches: one write(2) for many requests
// instead of one per request.
type accessLog struct {
	w     io.Writer
	every time.Duration
	log   *slog.Logger

	mu     sync.Mutex
	buf    []byte
	timer  *time.Timer
	closed bool
}

func newAccessLog(w io.Writer, every time.Duration, log *slog.Logger) *accessLog {
	return &accessLog{w: w, every: every, log: log}
}

// write appends one entry, and writes it now or within the flush interval.
func (a *accessLog) write(start time.Time, e *accessEntry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.buf = appendEntry(a.buf, start, e)
	switch {
	case a.every <= 0 || a.closed || len(a.buf) >= accessLogBatch:
		a.flushLocked()
	case a.timer == nil:
		a.timer = time.AfterFunc(a.every, a.flush)
	}
}

func (a *accessLog) flush() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.flushLocked()
}

func (a *accessLog) flushLocked() {
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
	if len(a.buf) == 0 {
		return
	}
	if _, err := a.w.Write(a.buf); err != nil {
		a.log.Warn("write access log", "err", err)
	}
	if cap(a.buf) > 4*accessLogBatch {
		a.buf = nil
	} else {
		a.buf = a.buf[:0]
	}
}

// close writes what is pending; later lines are written at once.
func (a *accessLog) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	a.flushLocked()
}

// appendEntry appends e as one JSON line, fields in accessEntry's order,
// with the encoding/json rules for the same struct (omitempty fields left
// out when empty, strings escaped).
func appendEntry(b []byte, start time.Time, e *accessEntry) []byte {
	b = append(b, `{"time":"`...)
	b = start.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","component":`...)
	b = appendJSONString(b, e.Component)
	b = append(b, `,"request_id":`...)
	b = appendJSONString(b, e.RequestID)
	b = append(b, `,"client":`...)
	b = appendJSONString(b, e.Client)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, e.Method)
	b = append(b, `,"host":`...)
	b = appendJSONString(b, e.Host)
	b = append(b, `,"path":`...)
	b = appendJSONString(b, e.Path)
	b = append(b, `,"proto":`...)
	b = appendJSONString(b, e.Proto)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	if e.TargetID != "" {
		b = append(b, `,"target_id":`...)
		b = appendJSONString(b, e.TargetID)
	}
	if e.TargetAddr != "" {
		b = append(b, `,"target_addr":`...)
		b = appendJSONString(b, e.TargetAddr)
	}
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(e.Attempts), 10)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendFloat(b, e.DurationMS, 'f', -1, 64)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, e.Bytes, 10)
	if e.Error != "" {
		b = append(b, `,"error":`...)
		b = appendJSONString(b, e.Error)
	}
	if e.Aborted {
		b = append(b, `,"aborted":true`...)
	}
	return append(b, "}\n"...)
}

// appendJSONString appends s as a JSON string, escaping as encoding/json
// does (quotes, backslashes, control characters, <, >, &, U+2028, U+2029,
// and invalid UTF-8 as U+FFFD).
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, `\u00`...)
				b = append(b, hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, `\u202`...)
			b = append(b, hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
