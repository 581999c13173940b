package alarms

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const snPassword = "s3cr3t-Integration-Pa55"

func notification(state State, prev State) Notification {
	d, _ := DefaultDefinitions(Params{FleetMin: 2})
	var def Definition
	for _, x := range d {
		if x.Name == AlarmDBFailover {
			def = x
		}
	}
	return Notification{Version: NotificationVersion, IdempotencyKey: "haven/dev/db-failover/7", CorrelationID: CorrelationID("dev", AlarmDBFailover),
		Region: "dev", AlarmName: AlarmDBFailover, AlarmDescription: def.Description, Runbook: def.Runbook,
		OldStateValue: prev, NewStateValue: state, NewStateReason: "Threshold Crossed: test", StateChangeTime: t0, Trigger: trigger(def)}
}

func TestServiceNowOpensOnceResolvesAndNotes(t *testing.T) {
	fake := &fakeServiceNow{user: "haven-int", pass: snPassword, t: t}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	sn, err := NewServiceNow(ServiceNowConfig{InstanceURL: srv.URL, Credentials: staticCreds(BasicAuth("haven-int", snPassword)), AssignmentGroup: "sre"})
	must(t, err)
	ctx := context.Background()

	if r, err := sn.Notify(ctx, notification(StateOK, StateInsufficientData)); err != nil || r != "no open incident to resolve" {
		t.Fatalf("OK with no incident: %q %v", r, err)
	}
	r, err := sn.Notify(ctx, notification(StateAlarm, StateOK))
	if err != nil || r != "opened incident INC0010001" {
		t.Fatalf("ALARM: %q %v", r, err)
	}
	// The same ALARM again (a retry whose answer was lost): no second incident.
	if r, err := sn.Notify(ctx, notification(StateAlarm, StateOK)); err != nil || !strings.Contains(r, "already open") {
		t.Fatalf("repeated ALARM: %q %v", r, err)
	}
	if r, err := sn.Notify(ctx, notification(StateInsufficientData, StateAlarm)); err != nil || r != "noted on incident INC0010001" {
		t.Fatalf("INSUFFICIENT_DATA: %q %v", r, err)
	}
	incs, _, posts, _ := fake.snapshot()
	if len(incs) != 1 || posts != 1 {
		t.Fatalf("%d incidents from %d creates, want 1", len(incs), posts)
	}
	inc := incs[0]
	if inc["correlation_id"] != "haven/dev/db-failover" || inc["short_description"] != "[haven dev] ALARM: db-failover" || inc["assignment_group"] != "sre" ||
		inc["impact"] != "2" || inc["urgency"] != "2" || !strings.Contains(inc["description"], "docs/runbooks/db-failover.md") || !strings.Contains(inc["work_notes"], "INSUFFICIENT_DATA") {
		t.Errorf("incident %v", inc)
	}
	if r, err := sn.Notify(ctx, notification(StateOK, StateAlarm)); err != nil || r != "resolved incident INC0010001" {
		t.Fatalf("OK: %q %v", r, err)
	}
	incs, _, _, _ = fake.snapshot()
	if s := incs[0]["state"]; s != SNStateResolved || incs[0]["close_code"] != DefaultCloseCode || !strings.Contains(incs[0]["close_notes"], "returned to OK") {
		t.Errorf("after OK: state %s close_code %q notes %q", s, incs[0]["close_code"], incs[0]["close_notes"])
	}
	// A new episode opens a new incident: the resolved one is not reused.
	if r, err := sn.Notify(ctx, notification(StateAlarm, StateOK)); err != nil || r != "opened incident INC0010002" {
		t.Fatalf("second episode: %q %v", r, err)
	}
}

func TestServiceNowBearerTokenAndErrors(t *testing.T) {
	fake := &fakeServiceNow{token: "tok-" + snPassword, t: t}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	sn, err := NewServiceNow(ServiceNowConfig{InstanceURL: srv.URL + "/", Credentials: staticCreds(BearerToken("tok-" + snPassword))})
	must(t, err)
	if _, err := sn.Notify(context.Background(), notification(StateAlarm, StateOK)); err != nil {
		t.Fatalf("bearer: %v", err)
	}
	wrong, _ := NewServiceNow(ServiceNowConfig{InstanceURL: srv.URL, Credentials: staticCreds(BasicAuth("x", snPassword))})
	_, err = wrong.Notify(context.Background(), notification(StateAlarm, StateOK))
	if err == nil || !strings.Contains(err.Error(), "401") || strings.Contains(err.Error(), snPassword) {
		t.Fatalf("wrong credential: %v", err)
	}
	failing, _ := NewServiceNow(ServiceNowConfig{InstanceURL: srv.URL, Credentials: CredentialsFunc(func(context.Context) (Credential, error) {
		return Credential{}, fmt.Errorf("secret haven/servicenow not found")
	})})
	if _, err := failing.Notify(context.Background(), notification(StateAlarm, StateOK)); err == nil || !strings.Contains(err.Error(), "get servicenow credential") {
		t.Fatalf("credential error: %v", err)
	}
}

func TestActionConfigIsCheckedAndNamesTheField(t *testing.T) {
	for _, c := range []struct {
		cfg  ServiceNowConfig
		want string
	}{
		{ServiceNowConfig{Credentials: staticCreds(Credential{})}, "servicenow.instance_url: must be set"},
		{ServiceNowConfig{InstanceURL: "http://example.service-now.com", Credentials: staticCreds(Credential{})}, "must be https"},
		{ServiceNowConfig{InstanceURL: "https://example.service-now.com"}, "servicenow.credentials: must be set"},
		{ServiceNowConfig{InstanceURL: "https://admin:" + snPassword + "@example.service-now.com", Credentials: staticCreds(Credential{})}, "must not carry credentials"},
		{ServiceNowConfig{InstanceURL: "ftp://example.service-now.com", Credentials: staticCreds(Credential{})}, "http or https"},
	} {
		_, err := NewServiceNow(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), snPassword) {
			t.Errorf("%+v: error %v, want %q and no secret", c.cfg.InstanceURL, err, c.want)
		}
	}
	if _, err := NewServiceNow(ServiceNowConfig{InstanceURL: "http://127.0.0.1:1", Credentials: staticCreds(Credential{})}); err != nil {
		t.Errorf("plain http to loopback refused: %v", err)
	}
	if _, err := NewWebhook(WebhookConfig{URL: "https://u:" + snPassword + "@hooks.example.com/x"}); err == nil || strings.Contains(err.Error(), snPassword) || !strings.Contains(err.Error(), "webhook.url") {
		t.Errorf("webhook with credentials in the URL: %v", err)
	}
	if _, err := NewWebhook(WebhookConfig{}); err == nil || !strings.Contains(err.Error(), "webhook.url: must be set") {
		t.Errorf("webhook without URL: %v", err)
	}
}

func TestWebhookPostsTheDocumentedJSON(t *testing.T) {
	h := &hook{}
	srv := httptest.NewServer(h)
	defer srv.Close()
	w, err := NewWebhook(WebhookConfig{URL: srv.URL + "/alarms", Credentials: staticCreds(BearerToken("hook-" + snPassword))})
	must(t, err)
	n := notification(StateAlarm, StateOK)
	r, err := w.Notify(context.Background(), n)
	if err != nil || r != "webhook answered 204 No Content" {
		t.Fatalf("notify: %q %v", r, err)
	}
	got := h.all()
	if len(got) != 1 || h.keys[0] != n.IdempotencyKey || h.auth[0] != "Bearer hook-"+snPassword {
		t.Fatalf("received %d, key %q, auth %q", len(got), h.keys, h.auth)
	}
	b, _ := json.Marshal(n)
	var fields map[string]any
	_ = json.Unmarshal(b, &fields)
	for _, f := range []string{"Version", "IdempotencyKey", "CorrelationId", "Region", "AlarmName", "AlarmDescription", "Runbook", "OldStateValue", "NewStateValue", "NewStateReason", "NewStateReasonData", "StateChangeTime", "Trigger"} {
		if _, ok := fields[f]; !ok {
			t.Errorf("the JSON body lacks %s (docs/alarms.md documents it)", f)
		}
	}
	tr := fields["Trigger"].(map[string]any)
	if tr["MetricName"] != MetricDatabaseFailovers || tr["Statistic"] != "SUM" || tr["StatisticType"] != "Statistic" || tr["Period"] != 60.0 || tr["Namespace"] != Namespace {
		t.Errorf("Trigger %v", tr)
	}
	h.status = http.StatusServiceUnavailable
	if _, err := w.Notify(context.Background(), n); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("503 acknowledged: %v", err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	down, _ := NewWebhook(WebhookConfig{URL: "http://" + addr + "/x", Client: &http.Client{Timeout: 2 * time.Second}})
	if _, err := down.Notify(context.Background(), n); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("unreachable webhook: %v", err)
	}
}

func TestCredentialNeverShowsItsSecret(t *testing.T) {
	for _, c := range []Credential{BasicAuth("u", snPassword), BearerToken(snPassword)} {
		var sb strings.Builder
		lg := slog.New(slog.NewJSONHandler(&sb, nil))
		lg.Info("x", "cred", c, "struct", struct{ C Credential }{c})
		lg.Info("y", slog.Any("ptr", &c))
		b, err := json.Marshal(map[string]any{"c": c})
		out := fmt.Sprintf("%v %+v %#v %s %q %x", c, c, c, c, c, c) + fmt.Sprint(c) + sb.String() + string(b) + fmt.Sprintf("%+v", struct{ C Credential }{c})
		if err != nil || strings.Contains(out, snPassword) || strings.Contains(out, strings.ToLower(fmt.Sprintf("%x", snPassword))) {
			t.Fatalf("secret shown: %s (%v)", out, err)
		}
		if !strings.Contains(out, redacted) || c.IsZero() {
			t.Errorf("want [redacted]: %s", out)
		}
	}
}

func TestCredentialFromSecret(t *testing.T) {
	for _, c := range []struct {
		in, want string // want: the Authorization header, or an error's words
	}{
		{`{"username":"haven","password":"s3cret"}`, "Basic aGF2ZW46czNjcmV0"},
		{`{"token":"abc"}`, "Bearer abc"},
		{`{"username":"haven"}`, `either "username" and "password", or "token"`},
		{`{"token":"abc","password":"x"}`, `either`},
		{`s3cret`, "not JSON"},
	} {
		cred, err := CredentialFromSecret(c.in)
		if err != nil {
			if !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "s3cret") {
				t.Errorf("%s: error %v, want %q and no value", c.in, err, c.want)
			}
			continue
		}
		req, _ := http.NewRequest(http.MethodGet, "http://x", nil)
		cred.apply(req)
		if got := req.Header.Get("Authorization"); got != c.want {
			t.Errorf("%s: Authorization %q, want %q", c.in, got, c.want)
		}
	}
}
