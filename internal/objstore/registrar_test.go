package objstore

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// TestRegistrar: credentials issued through the Registrar work on the store
// at once; ones issued while the store is down, and all of them after it
// restarts, work again after Resync; revoking an instance revokes them in both.
func TestRegistrar(t *testing.T) {
	st := startStore(t, baseConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := &Registrar{Issuer: st.iss, Store: st.client, Timeout: time.Second, Logger: testLogger(t)}
	defer r.Close()
	put := func(c *s3.Client, key string) error {
		_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("uploads"), Key: aws.String(key), Body: strings.NewReader(key)})
		return err
	}
	first, err := r.Issue(appRole, "i-0eeeeeeeeeeeeeee5")
	must(t, err)
	must(t, put(st.s3(first), "first"))

	must(t, st.proc.Stop(ctx))
	second, err := r.Issue(appRole, "i-0eeeeeeeeeeeeeee5")
	if err != nil {
		t.Fatalf("Issue with the store down: %v (the credential must still be issued)", err)
	}
	must(t, st.proc.Start(ctx))
	// The credential issued while the store was down is registered in the
	// background once it answers; the one registered before the restart
	// needs Resync (the store keeps credentials in memory only).
	for put(st.s3(second), "second") != nil {
		if ctx.Err() != nil {
			t.Fatal("the credential issued while the store was down was never registered in the background")
		}
		time.Sleep(50 * time.Millisecond)
	}
	wantCode(t, "before Resync", put(st.s3(first), "first-again"), "InvalidAccessKeyId")
	must(t, r.Resync(ctx))
	must(t, put(st.s3(first), "first-again"))

	n, err := r.RevokeInstance(ctx, "i-0eeeeeeeeeeeeeee5")
	if err != nil || n != 2 {
		t.Fatalf("RevokeInstance = %d, %v; want 2", n, err)
	}
	wantCode(t, "after RevokeInstance", put(st.s3(second), "third"), "InvalidAccessKeyId")
	if _, err := st.iss.Lookup(second.AccessKeyID); err == nil {
		t.Fatal("the issuer still holds the revoked credential")
	}
	must(t, r.Resync(ctx)) // nothing left to register
	// The restarted store held only what Resync gave it, and that is revoked.
	st.waitStatus("no live credentials", func(s Status) bool { return s.Credentials == 0 })
}
