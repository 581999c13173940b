package objstore

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestRelay: requests through the relay reach the target with their Host
// header as sent (what a SigV4 signature covers), and Close ends the
// listeners and the connections in flight.
func TestRelay(t *testing.T) {
	var hosts []string
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hosts = append(hosts, r.Host)
		body, _ := io.ReadAll(r.Body)
		w.Write([]byte("got " + string(body)))
	}))
	defer target.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &Relay{Target: target.Listener.Addr().String(), Logger: testLogger(t)}
	if err := r.Serve(ln); err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/bucket/key"
	for i := 0; i < 3; i++ { // keep-alive and fresh connections alike
		resp, err := http.Post(url, "text/plain", strings.NewReader("part"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "got part" {
			t.Fatalf("answer through the relay = %q", b)
		}
	}
	if hosts[0] != ln.Addr().String() {
		t.Errorf("the target saw Host %q, want the relay's address %s as the client sent it", hosts[0], ln.Addr())
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	http.DefaultClient.CloseIdleConnections()
	if _, err := http.Get(url); err == nil {
		t.Error("the relay still answers after Close")
	}
	if err := r.Serve(ln); err == nil {
		t.Error("Serve after Close succeeded")
	}
}
