package lambdaruntime

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeAPI is the Lambda Runtime API: it hands out queued events and records
// the answers.
type fakeAPI struct {
	mu      sync.Mutex
	events  []string
	answers map[string]string // request id -> "response: …" or "error: …"
	done    chan struct{}
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/2018-06-01/runtime/invocation/next":
		if len(f.events) == 0 {
			close(f.done)
			http.Error(w, "no more", http.StatusInternalServerError)
			return
		}
		id := "req-" + strconv.Itoa(len(f.answers)+1)
		w.Header().Set("Lambda-Runtime-Aws-Request-Id", id)
		w.Header().Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(time.Now().Add(time.Minute).UnixMilli(), 10))
		f.answers[id] = "pending"
		io.WriteString(w, f.events[0])
		f.events = f.events[1:]
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/2018-06-01/runtime/invocation/"):
		parts := strings.Split(r.URL.Path, "/")
		body, _ := io.ReadAll(r.Body)
		f.answers[parts[4]] = parts[5] + ": " + string(body)
		w.WriteHeader(http.StatusAccepted)
	case r.Method == http.MethodPost && r.URL.Path == "/2018-06-01/runtime/init/error":
		body, _ := io.ReadAll(r.Body)
		f.answers["init"] = string(body)
		w.WriteHeader(http.StatusAccepted)
	default:
		http.NotFound(w, r)
	}
}

func TestServeAnswersEachInvocation(t *testing.T) {
	api := &fakeAPI{events: []string{`{"n":1}`, `{"fail":true}`, `{"n":3}`}, answers: map[string]string{}, done: make(chan struct{})}
	srv := httptest.NewServer(api)
	defer srv.Close()
	var deadlines []bool
	h := func(ctx context.Context, payload []byte) ([]byte, error) {
		_, ok := ctx.Deadline()
		deadlines = append(deadlines, ok)
		if strings.Contains(string(payload), "fail") {
			return nil, errors.New("bad event")
		}
		return append([]byte("echo "), payload...), nil
	}
	err := Serve(context.Background(), strings.TrimPrefix(srv.URL, "http://"), h, slog.New(slog.NewTextHandler(io.Discard, nil)))
	// The fake API fails the fourth fetch: Serve returns that error.
	if err == nil || !strings.Contains(err.Error(), "fetch the next invocation") {
		t.Fatalf("Serve = %v, want the fetch error that ended it", err)
	}
	want := map[string]string{
		"req-1": `response: echo {"n":1}`,
		"req-2": `error: {"errorMessage":"bad event","errorType":"HandlerError"}`,
		"req-3": `response: echo {"n":3}`,
	}
	for id, w := range want {
		if api.answers[id] != w {
			t.Errorf("%s answered %q, want %q", id, api.answers[id], w)
		}
	}
	if len(deadlines) != 3 || !deadlines[0] || !deadlines[1] || !deadlines[2] {
		t.Errorf("handler contexts had deadlines %v, want three", deadlines)
	}
}

func TestServeNeedsTheRuntimeAPI(t *testing.T) {
	err := Serve(context.Background(), "", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "AWS_LAMBDA_RUNTIME_API") {
		t.Fatalf("Serve without API = %v", err)
	}
}

func TestInitErrorIsReported(t *testing.T) {
	api := &fakeAPI{answers: map[string]string{}, done: make(chan struct{})}
	srv := httptest.NewServer(api)
	defer srv.Close()
	cause := errors.New("HAVEN_DB_PORT: must be a port number")
	if err := InitError(context.Background(), strings.TrimPrefix(srv.URL, "http://"), cause); !errors.Is(err, cause) {
		t.Fatalf("InitError = %v, want the cause", err)
	}
	if got := api.answers["init"]; !strings.Contains(got, "HAVEN_DB_PORT") || !strings.Contains(got, "InitError") {
		t.Errorf("init error body %q", got)
	}
}
