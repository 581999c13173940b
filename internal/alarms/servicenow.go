package alarms

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

var tableRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,79}$`)

// ServiceNow incident states (the incident table's state field).
const (
	SNStateResolved = "6"
	SNStateClosed   = "7"
	SNStateCanceled = "8"
)

// DefaultCloseCode is the close_code of an incident the alarm resolves.
const DefaultCloseCode = "Resolved by caller"

// ServiceNowConfig configures a ServiceNow incident action.
type ServiceNowConfig struct {
	// InstanceURL is the instance, e.g. https://example.service-now.com.
	// https only (http only to a loopback host). It must not carry
	// credentials. Required.
	InstanceURL string
	// Credentials authenticate every request (basic auth of an integration
	// user, or an OAuth bearer token). Required.
	Credentials Credentials
	// Client sends the requests. Default an http.Client with a 10 s timeout
	// that does not follow redirects.
	Client *http.Client
	// Table is the table incidents are filed in. Default "incident".
	Table string
	// Impact and Urgency of opened incidents ("1" high … "3" low). Default
	// "2" each.
	Impact, Urgency string
	// CallerID, AssignmentGroup and Category, if set, are copied to opened
	// incidents (sys_ids or names, as the instance accepts). Default unset.
	CallerID, AssignmentGroup, Category string
	// CloseCode is the close_code set when the alarm resolves an incident.
	// Default "Resolved by caller".
	CloseCode string
}

// ServiceNow opens an incident when an alarm goes to ALARM and resolves it
// when the alarm returns to OK, through the ServiceNow Table API
// (docs/alarms.md):
//
//   - ALARM: GET /api/now/table/incident?sysparm_query=correlation_id=<id>^stateNOT IN6,7,8
//     finds an unresolved incident of the alarm; if there is none,
//     POST /api/now/table/incident opens one with correlation_id <id>. The
//     lookup makes a retried or repeated notification open nothing twice.
//   - OK: the same lookup, then PATCH /api/now/table/incident/<sys_id> with
//     state 6 (Resolved), close_code and close_notes on each incident found.
//   - INSUFFICIENT_DATA: the lookup, then a work note on each incident found.
//
// The correlation id is per alarm (Notification.CorrelationID), so one alarm
// has at most one unresolved incident.
type ServiceNow struct {
	base   *url.URL
	cfg    ServiceNowConfig
	client *http.Client
}

var _ Action = (*ServiceNow)(nil)

// NewServiceNow validates cfg and returns the action.
func NewServiceNow(cfg ServiceNowConfig) (*ServiceNow, error) {
	u, err := checkURL("servicenow.instance_url", cfg.InstanceURL, true)
	if err != nil {
		return nil, err
	}
	if cfg.Credentials == nil {
		return nil, errors.New("servicenow.credentials: must be set: the Table API needs an integration user or a token, from the secrets store")
	}
	if cfg.Table == "" {
		cfg.Table = "incident"
	}
	if !tableRE.MatchString(cfg.Table) {
		return nil, fmt.Errorf("servicenow.table: must be a table name such as incident, got %q", cfg.Table)
	}
	if cfg.Impact == "" {
		cfg.Impact = "2"
	}
	if cfg.Urgency == "" {
		cfg.Urgency = "2"
	}
	if cfg.CloseCode == "" {
		cfg.CloseCode = DefaultCloseCode
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return &ServiceNow{base: u, cfg: cfg, client: clientOr(cfg.Client)}, nil
}

// snRecord is the part of an incident record the action reads.
type snRecord struct {
	SysID  string `json:"sys_id"`
	Number string `json:"number"`
	State  string `json:"state"`
}

// Notify opens, resolves or annotates the alarm's incident.
func (s *ServiceNow) Notify(ctx context.Context, n Notification) (string, error) {
	if n.CorrelationID == "" {
		return "", errors.New("servicenow: notification has no correlation id")
	}
	cred, err := s.cfg.Credentials.Credential(ctx)
	if err != nil {
		return "", fmt.Errorf("get servicenow credential: %w", err)
	}
	open, err := s.openIncidents(ctx, cred, n.CorrelationID)
	if err != nil {
		return "", err
	}
	switch n.NewStateValue {
	case StateAlarm:
		if len(open) > 0 {
			return fmt.Sprintf("incident %s is already open for %s", open[0].Number, n.CorrelationID), nil
		}
		rec, err := s.create(ctx, cred, n)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("opened incident %s", rec.Number), nil
	case StateOK:
		if len(open) == 0 {
			return "no open incident to resolve", nil
		}
		var done []string
		for _, r := range open {
			if err := s.patch(ctx, cred, r.SysID, map[string]string{
				"state":       SNStateResolved,
				"close_code":  s.cfg.CloseCode,
				"close_notes": fmt.Sprintf("Resolved by haven: alarm %s returned to OK at %s. %s", n.AlarmName, n.StateChangeTime.UTC().Format(time.RFC3339), n.NewStateReason),
			}); err != nil {
				return "", fmt.Errorf("resolve incident %s: %w", r.Number, err)
			}
			done = append(done, r.Number)
		}
		return "resolved incident " + strings.Join(done, ", "), nil
	default:
		if len(open) == 0 {
			return "no open incident to annotate", nil
		}
		for _, r := range open {
			if err := s.patch(ctx, cred, r.SysID, map[string]string{
				"work_notes": fmt.Sprintf("haven: alarm %s went to %s at %s. %s", n.AlarmName, n.NewStateValue, n.StateChangeTime.UTC().Format(time.RFC3339), n.NewStateReason),
			}); err != nil {
				return "", fmt.Errorf("annotate incident %s: %w", r.Number, err)
			}
		}
		return "noted on incident " + open[0].Number, nil
	}
}

// tableURL is the table's URL, with "/<sys_id>" when sysID is set.
func (s *ServiceNow) tableURL(sysID string, q url.Values) string {
	u := *s.base
	u.Path += "/api/now/table/" + s.cfg.Table
	if sysID != "" {
		u.Path += "/" + sysID
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// openIncidents returns the alarm's incidents that are not resolved,
// closed or canceled.
func (s *ServiceNow) openIncidents(ctx context.Context, cred Credential, correlationID string) ([]snRecord, error) {
	q := url.Values{}
	// In an encoded query '^' separates conditions; a literal one is '^^'.
	q.Set("sysparm_query", "correlation_id="+strings.ReplaceAll(correlationID, "^", "^^")+"^stateNOT IN"+SNStateResolved+","+SNStateClosed+","+SNStateCanceled)
	q.Set("sysparm_fields", "sys_id,number,state")
	q.Set("sysparm_limit", "10")
	var out struct {
		Result []snRecord `json:"result"`
	}
	if err := s.do(ctx, cred, http.MethodGet, s.tableURL("", q), nil, http.StatusOK, &out); err != nil {
		return nil, fmt.Errorf("look up incidents of %s: %w", correlationID, err)
	}
	return out.Result, nil
}

func (s *ServiceNow) create(ctx context.Context, cred Credential, n Notification) (snRecord, error) {
	desc := fmt.Sprintf("Alarm %s in region %s went from %s to %s at %s.\n\n%s\n\n%s\nMetric: %s %s over %d s, %d of %d datapoints %s %g.\nRunbook: %s\nCorrelation id: %s",
		n.AlarmName, n.Region, n.OldStateValue, n.NewStateValue, n.StateChangeTime.UTC().Format(time.RFC3339),
		n.AlarmDescription, n.NewStateReason, n.Trigger.MetricName, firstNonEmpty(n.Trigger.ExtendedStatistic, n.Trigger.Statistic),
		n.Trigger.Period, n.Trigger.DatapointsToAlarm, n.Trigger.EvaluationPeriods, n.Trigger.ComparisonOperator, n.Trigger.Threshold,
		n.Runbook, n.CorrelationID)
	body := map[string]string{
		"short_description":   fmt.Sprintf("[haven %s] ALARM: %s", n.Region, n.AlarmName),
		"description":         desc,
		"correlation_id":      n.CorrelationID,
		"correlation_display": "haven",
		"impact":              s.cfg.Impact,
		"urgency":             s.cfg.Urgency,
	}
	for k, v := range map[string]string{"caller_id": s.cfg.CallerID, "assignment_group": s.cfg.AssignmentGroup, "category": s.cfg.Category} {
		if v != "" {
			body[k] = v
		}
	}
	var out struct {
		Result snRecord `json:"result"`
	}
	if err := s.do(ctx, cred, http.MethodPost, s.tableURL("", nil), body, http.StatusCreated, &out); err != nil {
		return snRecord{}, fmt.Errorf("open incident for %s: %w", n.CorrelationID, err)
	}
	return out.Result, nil
}

func (s *ServiceNow) patch(ctx context.Context, cred Credential, sysID string, fields map[string]string) error {
	return s.do(ctx, cred, http.MethodPatch, s.tableURL(sysID, nil), fields, http.StatusOK, nil)
}

func (s *ServiceNow) do(ctx context.Context, cred Credential, method, u string, body any, want int, out any) error {
	var rd *bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", userAgent)
	cred.apply(req)
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s answered %s: %s", method, req.URL.Path, resp.Status, snippet(resp.Body))
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return fmt.Errorf("decode %s %s response: %w", method, req.URL.Path, err)
		}
	}
	return nil
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
