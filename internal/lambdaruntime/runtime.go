// Package lambdaruntime serves AWS Lambda invocations from a custom runtime
// (provided.al2023) through the Lambda Runtime API, with the standard
// library only.
package lambdaruntime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

// Handler handles one invocation: the event payload in, the response out.
type Handler func(ctx context.Context, payload []byte) ([]byte, error)

const apiVersion = "2018-06-01"

// maxPayload bounds an event (Lambda's own synchronous limit is 6 MB).
const maxPayload = 6 << 20

// Serve fetches invocations from the Runtime API at api (the host:port in
// AWS_LAMBDA_RUNTIME_API) and answers each with h's result or error, until
// ctx ends or the API fails. Each invocation's context ends at its deadline.
func Serve(ctx context.Context, api string, h Handler, log *slog.Logger) error {
	if api == "" {
		return errors.New("serve Lambda invocations: AWS_LAMBDA_RUNTIME_API is not set; run this program as a Lambda function (runtime provided.al2023)")
	}
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "lambdaruntime")
	base := "http://" + api + "/" + apiVersion + "/runtime"
	client := &http.Client{} // the next-invocation call blocks until there is one: no timeout
	for {
		id, deadline, payload, err := next(ctx, client, base)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("fetch the next invocation: %w", err)
		}
		ictx, cancel := context.WithDeadline(ctx, deadline)
		out, herr := h(ictx, payload)
		cancel()
		if herr != nil {
			log.Error("invocation failed", "request_id", id, "err", herr)
			body, _ := json.Marshal(map[string]string{"errorMessage": herr.Error(), "errorType": "HandlerError"})
			err = post(ctx, client, base+"/invocation/"+id+"/error", body)
		} else {
			err = post(ctx, client, base+"/invocation/"+id+"/response", out)
		}
		if err != nil {
			return fmt.Errorf("answer invocation %s: %w", id, err)
		}
	}
}

// next blocks until the Runtime API hands out an invocation.
func next(ctx context.Context, c *http.Client, base string) (id string, deadline time.Time, payload []byte, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/invocation/next", nil)
	if err != nil {
		return "", time.Time{}, nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", time.Time{}, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", time.Time{}, nil, fmt.Errorf("runtime API answered %s", resp.Status)
	}
	id = resp.Header.Get("Lambda-Runtime-Aws-Request-Id")
	if id == "" {
		return "", time.Time{}, nil, errors.New("runtime API sent no Lambda-Runtime-Aws-Request-Id")
	}
	ms, err := strconv.ParseInt(resp.Header.Get("Lambda-Runtime-Deadline-Ms"), 10, 64)
	if err != nil {
		return "", time.Time{}, nil, fmt.Errorf("runtime API sent a bad Lambda-Runtime-Deadline-Ms %q", resp.Header.Get("Lambda-Runtime-Deadline-Ms"))
	}
	payload, err = io.ReadAll(io.LimitReader(resp.Body, maxPayload+1))
	if err != nil {
		return "", time.Time{}, nil, err
	}
	if len(payload) > maxPayload {
		return "", time.Time{}, nil, fmt.Errorf("invocation %s: event larger than %d bytes", id, maxPayload)
	}
	return id, time.UnixMilli(ms), payload, nil
}

func post(ctx context.Context, c *http.Client, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("runtime API answered %s", resp.Status)
	}
	return nil
}

// InitError reports a failure before the first invocation (bad
// configuration), so Lambda shows it instead of a timeout.
func InitError(ctx context.Context, api string, cause error) error {
	if api == "" {
		return cause
	}
	body, _ := json.Marshal(map[string]string{"errorMessage": cause.Error(), "errorType": "InitError"})
	if err := post(ctx, &http.Client{Timeout: 5 * time.Second}, "http://"+api+"/"+apiVersion+"/runtime/init/error", body); err != nil {
		return fmt.Errorf("%w (and reporting it failed: %v)", cause, err)
	}
	return cause
}
