package alarms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// Action delivers an alarm's state change somewhere: a webhook, an incident
// system. The engine calls Notify once per transition and action, retrying
// with backoff until it returns nil, and persists what it has not delivered
// so a restart loses nothing.
type Action interface {
	// Notify delivers n and returns a short receipt for the alarm's
	// history (e.g. "opened incident INC0010001"). A nil error means the
	// receiver acknowledged n. A retried n carries the same
	// IdempotencyKey; Notify should make a repeat harmless.
	Notify(ctx context.Context, n Notification) (receipt string, err error)
}

// NotificationVersion is the version of the Notification JSON.
const NotificationVersion = "1"

// Notification is one state change of one alarm, as actions receive it and
// as the webhook posts it (docs/alarms.md). Its fields are named after
// CloudWatch's alarm notification (the SNS message), plus haven's
// IdempotencyKey, CorrelationId, Runbook and NewStateReasonData.
type Notification struct {
	Version string `json:"Version"`
	// IdempotencyKey is unique per transition: "haven/<region>/<alarm>/<n>".
	// A receiver that sees it twice has seen a retry.
	IdempotencyKey string `json:"IdempotencyKey"`
	// CorrelationID is the same for every transition of one alarm:
	// "haven/<region>/<alarm>". The incident action files it as the
	// incident's correlation_id.
	CorrelationID      string     `json:"CorrelationId"`
	Region             string     `json:"Region"`
	AlarmName          string     `json:"AlarmName"`
	AlarmDescription   string     `json:"AlarmDescription"`
	Runbook            string     `json:"Runbook"`
	OldStateValue      State      `json:"OldStateValue"`
	NewStateValue      State      `json:"NewStateValue"`
	NewStateReason     string     `json:"NewStateReason"`
	NewStateReasonData ReasonData `json:"NewStateReasonData"`
	StateChangeTime    time.Time  `json:"StateChangeTime"`
	Trigger            Trigger    `json:"Trigger"`
}

// Trigger describes the alarm's condition, as in CloudWatch's notification.
type Trigger struct {
	MetricName string `json:"MetricName"`
	Namespace  string `json:"Namespace"`
	// StatisticType is "Statistic" or "ExtendedStatistic" (a percentile).
	StatisticType      string  `json:"StatisticType"`
	Statistic          string  `json:"Statistic,omitempty"`
	ExtendedStatistic  string  `json:"ExtendedStatistic,omitempty"`
	Unit               Unit    `json:"Unit"`
	Period             int     `json:"Period"`
	EvaluationPeriods  int     `json:"EvaluationPeriods"`
	DatapointsToAlarm  int     `json:"DatapointsToAlarm"`
	ComparisonOperator string  `json:"ComparisonOperator"`
	Threshold          float64 `json:"Threshold"`
	TreatMissingData   string  `json:"TreatMissingData"`
}

// Namespace is the Trigger namespace of haven's metrics.
const Namespace = "Haven"

func trigger(d Definition) Trigger {
	d = d.WithDefaults()
	m, _ := LookupMetric(d.Metric)
	t := Trigger{MetricName: d.Metric, Namespace: Namespace, Unit: m.Unit, Period: int(d.Period / time.Second),
		EvaluationPeriods: d.EvaluationPeriods, DatapointsToAlarm: d.DatapointsToAlarm,
		ComparisonOperator: string(d.Comparison), Threshold: d.Threshold, TreatMissingData: string(d.TreatMissingData)}
	if _, ok := d.Statistic.Percentile(); ok {
		t.StatisticType, t.ExtendedStatistic = "ExtendedStatistic", string(d.Statistic)
	} else {
		t.StatisticType, t.Statistic = "Statistic", strings.ToUpper(string(d.Statistic))
	}
	return t
}

// Credential is the secret an action presents to its endpoint: basic auth
// or a bearer token. It never prints, logs or marshals its secret: every
// format verb, slog and JSON show "[redacted]".
type Credential struct {
	user, password, token string
}

// BasicAuth returns a credential sent as HTTP basic auth.
func BasicAuth(user, password string) Credential { return Credential{user: user, password: password} }

// BearerToken returns a credential sent as "Authorization: Bearer <token>".
func BearerToken(token string) Credential { return Credential{token: token} }

// IsZero reports whether c holds no secret.
func (c Credential) IsZero() bool { return c == Credential{} }

func (c Credential) apply(r *http.Request) {
	switch {
	case c.token != "":
		r.Header.Set("Authorization", "Bearer "+c.token)
	case c.user != "" || c.password != "":
		r.SetBasicAuth(c.user, c.password)
	}
}

const redacted = "[redacted]"

// String returns "[redacted]".
func (Credential) String() string { return redacted }

// GoString returns "[redacted]".
func (Credential) GoString() string { return redacted }

// Format prints "[redacted]" for every verb.
func (Credential) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// LogValue logs "[redacted]".
func (Credential) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON marshals "[redacted]".
func (Credential) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// Credentials supplies an action's credential when it needs one. The region
// backs it with its secrets store, so the secret is in neither the spec nor
// the state dir, and a rotation applies at the next delivery.
type Credentials interface {
	Credential(ctx context.Context) (Credential, error)
}

// CredentialsFunc adapts a function to Credentials.
type CredentialsFunc func(ctx context.Context) (Credential, error)

// Credential calls f.
func (f CredentialsFunc) Credential(ctx context.Context) (Credential, error) { return f(ctx) }

// snippet returns the start of an error response body for an error message.
func snippet(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 200))
	return strings.TrimSpace(strings.ToValidUTF8(string(b), "?"))
}

// CredentialFromSecret reads an action's credential from a secret's value:
// {"username": ..., "password": ...} for basic auth, or {"token": ...} for
// a bearer token. The error never quotes the value.
func CredentialFromSecret(value string) (Credential, error) {
	var v struct {
		Username string `json:"username"`
		Password string `json:"password"`
		Token    string `json:"token"`
	}
	if err := json.Unmarshal([]byte(value), &v); err != nil {
		return Credential{}, errors.New(`the secret is not JSON: store {"username": ..., "password": ...} or {"token": ...}`)
	}
	switch {
	case v.Token != "" && v.Username == "" && v.Password == "":
		return BearerToken(v.Token), nil
	case v.Token == "" && v.Username != "" && v.Password != "":
		return BasicAuth(v.Username, v.Password), nil
	}
	return Credential{}, errors.New(`the secret must hold either "username" and "password", or "token"`)
}
