package spec

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestStorageDefaults(t *testing.T) {
	s, err := Parse([]byte("name: exam\n"), "h.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.ObjStore.Buckets) != 1 || s.ObjStore.Buckets[0].Name != "exam-assets" {
		t.Fatalf("buckets = %+v, want one named exam-assets", s.ObjStore.Buckets)
	}
	if s.ObjStore.Listen != "127.0.0.1:9000" || s.ObjStore.MaxUpload != 5<<30 || s.ObjStore.AbortIncompleteUploads.D() != 7*24*time.Hour {
		t.Errorf("objstore = %+v", s.ObjStore)
	}
	bs := s.Edge.Behaviors
	if len(bs) != 2 || bs[0].Path != "/static/*" || bs[0].Target != "exam-assets" || bs[0].Signed ||
		bs[1].Path != "/materials/*" || !bs[1].Signed {
		t.Fatalf("behaviors = %+v", bs)
	}
	if lo, def, hi := bs[0].TTLs(); lo.D() != time.Second || def.D() != 24*time.Hour || hi.D() != 365*24*time.Hour {
		t.Errorf("bucket behaviour TTLs = %s/%s/%s, want CachingOptimized's 1s/24h/365d", lo, def, hi)
	}
	if s.Edge.KeyGroup != "exam-materials" || s.Edge.Listen != "127.0.0.1:8445" {
		t.Errorf("edge = %+v", s.Edge)
	}
}

func TestEdgeBehaviourToTheLBCachesNothingByDefault(t *testing.T) {
	s, err := Parse([]byte("edge:\n  behaviors:\n    - {path: /api/*, target: lb}\n    - {path: /img/*, target: courses-assets, default_ttl: 1h, max_ttl: 2h}\n"), "h.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if b := s.Edge.Behaviors[0]; b.Caching() {
		t.Errorf("lb behaviour caches: %+v", b)
	}
	if lo, def, hi := s.Edge.Behaviors[1].TTLs(); lo.D() != time.Second || def.D() != time.Hour || hi.D() != 2*time.Hour {
		t.Errorf("TTLs = %s/%s/%s, want the unset min at its default and the set ones kept", lo, def, hi)
	}
	zero, err := Parse([]byte("edge:\n  behaviors:\n    - {path: /x/*, target: courses-assets, min_ttl: 0s, default_ttl: 0s, max_ttl: 0s}\n"), "h.yaml")
	if err != nil || zero.Edge.Behaviors[0].Caching() {
		t.Errorf("all TTLs 0 on a bucket behaviour: %v, caching %v; want caching off", err, err == nil && zero.Edge.Behaviors[0].Caching())
	}
}

func TestStorageProblemsNameTheField(t *testing.T) {
	tests := []struct{ name, in, field, msg string }{
		{"bucket name", "objstore:\n  buckets:\n    - {name: Courses_Assets}\n", "objstore.buckets[0].name", "uppercase"},
		{"bucket name short", "objstore:\n  buckets:\n    - {name: ab}\n", "objstore.buckets[0].name", "2 characters long"},
		{"bucket name ip", "objstore:\n  buckets:\n    - {name: 192.168.1.1}\n", "objstore.buckets[0].name", "IP address"},
		{"bucket twice", "objstore:\n  buckets:\n    - {name: abc}\n    - {name: abc}\n", "objstore.buckets[1].name", "already listed"},
		{"unknown role", "objstore:\n  buckets:\n    - {name: abc, access: [{role: admin, actions: [read], keys: ['*']}]}\n", "objstore.buckets[0].access[0].role", "edge, app or release"},
		{"unknown action", "objstore:\n  buckets:\n    - {name: abc, access: [{role: app, actions: [readwrite], keys: ['*']}]}\n", "objstore.buckets[0].access[0].actions[0]", "read, write, list, delete"},
		{"edge writes", "objstore:\n  buckets:\n    - {name: abc, access: [{role: edge, actions: [write], keys: ['*']}]}\n", "objstore.buckets[0].access[0].actions[0]", "may only read"},
		{"key with slash", "objstore:\n  buckets:\n    - {name: abc, access: [{role: app, actions: [read], keys: [/materials/*]}]}\n", "objstore.buckets[0].access[0].keys[0]", "leading slash"},
		{"no keys", "objstore:\n  buckets:\n    - {name: abc, access: [{role: app, actions: [read]}]}\n", "objstore.buckets[0].access[0].keys", "at least one"},
		{"upload limit too big", "objstore: {max_upload: 6TiB}\n", "objstore.max_upload", "1KiB to 5TiB"},
		{"upload limit too small", "objstore: {max_upload: 10}\n", "objstore.max_upload", "1KiB to 5TiB"},
		{"listen", "objstore: {listen: nowhere}\n", "objstore.listen", "IP address and port"},
		{"unknown target", "edge:\n  behaviors:\n    - {path: /static/*, target: courses-asets}\n", "edge.behaviors[0].target", `unknown target "courses-asets"; use lb (the load balancer) or a bucket of objstore.buckets (courses-assets)`},
		{"ttl min > max", "edge:\n  behaviors:\n    - {path: /static/*, target: courses-assets, min_ttl: 2h, default_ttl: 2h, max_ttl: 1h}\n", "edge.behaviors[0].min_ttl", "must be ≤ max_ttl (1h0m0s), got 2h0m0s"},
		{"default outside", "edge:\n  behaviors:\n    - {path: /static/*, target: courses-assets, min_ttl: 1m, default_ttl: 1s, max_ttl: 1h}\n", "edge.behaviors[0].default_ttl", "between min_ttl"},
		{"ttl too long", "edge:\n  behaviors:\n    - {path: /static/*, target: courses-assets, max_ttl: 400d}\n", "edge.behaviors[0].max_ttl", "0 to 365d"},
		{"path", "edge:\n  behaviors:\n    - {path: static/*, target: lb}\n", "edge.behaviors[0].path", "starting with /"},
		{"path is default", "edge:\n  behaviors:\n    - {path: /*, target: lb}\n", "edge.behaviors[0].path", "default behaviour"},
		{"path twice", "edge:\n  behaviors:\n    - {path: /a/*, target: lb}\n    - {path: /a/*, target: lb}\n", "edge.behaviors[1].path", "never be used"},
		{"key group", "edge: {key_group: 'a b'}\n", "edge.key_group", "letters, digits"},
		{"old field", "edge: {static: [/static/*]}\n", "edge.static", "unknown field; allowed here: behaviors, key_group, listen"},
		{"listener twice", "edge: {listen: 127.0.0.1:8444}\n", "console.listen", "127.0.0.1:8444 is already edge.listen's address"},
		{"listener twice objstore", "objstore: {listen: 127.0.0.1:4566}\n", "objstore.listen", "already secrets.listen's address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in), "h.yaml")
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want *spec.Error", err)
			}
			if msg := err.Error(); !strings.Contains(msg, tt.field+": ") || !strings.Contains(msg, tt.msg) {
				t.Errorf("error %q does not name %q with %q", msg, tt.field, tt.msg)
			}
		})
	}
}

func TestValidBucketName(t *testing.T) {
	for _, ok := range []string{"abc", "courses-assets", "a.b.c", "x1-y2", strings.Repeat("a", 63)} {
		if err := ValidBucketName(ok); err != nil {
			t.Errorf("ValidBucketName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"ab", strings.Repeat("a", 64), "Abc", "a_b", "-abc", "abc-", "a..b", "10.0.0.1", "xn--abc", "abc-s3alias", "abc--ol-s3", ""} {
		if err := ValidBucketName(bad); err == nil {
			t.Errorf("ValidBucketName(%q) = nil, want an error", bad)
		}
	}
}
