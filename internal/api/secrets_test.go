package api

import (
	"testing"
	"time"
)

func TestAuditQueryRoundTrips(t *testing.T) {
	q := AuditQuery{Since: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), Action: "GetSecretValue", Principal: "courses-app", Secret: "arn:x", Failed: true}
	got, err := ParseAuditQuery(q.Values())
	if err != nil || got != q {
		t.Fatalf("round trip = %+v, %v; want %+v", got, err, q)
	}
	if got, err := ParseAuditQuery(AuditQuery{}.Values()); err != nil || got != (AuditQuery{}) {
		t.Fatalf("empty query = %+v, %v", got, err)
	}
	v := q.Values()
	v.Set("since", "yesterday")
	if _, err := ParseAuditQuery(v); err == nil {
		t.Fatal("a bad since parsed")
	}
}
