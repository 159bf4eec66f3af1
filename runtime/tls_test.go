package runtime_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-run/sluice/internal/testenv"
	"github.com/sluice-run/sluice/runtime"
)

// TestClusterRoutesOverTLS: with cluster { tls { cert, key, ca } } the
// route listener offers only TLS, and two nodes form a cluster over it
// (their streams have two replicas, which needs both).
func TestClusterRoutesOverTLS(t *testing.T) {
	testenv.Guest(t, "internal/testguests/noop")
	certs := testenv.TLSCerts(t)
	ports := []int{testenv.FreePort(t), testenv.FreePort(t)}
	routes := fmt.Sprintf(`["nats://127.0.0.1:%d", "nats://127.0.0.1:%d"]`, ports[0], ports[1])
	rts := make([]*runtime.Runtime, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range rts {
		cfg := testenv.Config(t, fmt.Sprintf(`
nats {
  replicas = 2
  cluster {
    listen   = "127.0.0.1:%d"
    routes   = %s
    user     = "route"
    password = "route-secret"
    tls {
      cert = %q
      key  = %q
      ca   = %q
    }
  }
}
function "noop" { module = "internal/testguests/noop/noop.wasm" }
queue "ok" {
  subject  = "ok.send"
  function = "noop"
}
`, ports[i], routes, certs.ServerCert, certs.ServerKey, certs.CA))
		opts := testenv.RuntimeOptions(t, cfg, "")
		opts.Name = fmt.Sprintf("n%d", i+1)
		wg.Go(func() { rts[i], errs[i] = runtime.Start(context.Background(), opts) })
	}
	wg.Wait()
	for i, rt := range rts {
		if rt != nil {
			t.Cleanup(func() {
				if err := rt.Shutdown(); err != nil {
					t.Errorf("shutdown n%d: %v", i+1, err)
				}
			})
		}
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("start n%d: %v", i+1, err)
		}
	}

	// The route port speaks only TLS, to peers presenting a certificate
	// the CA signed.
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	ca, err := os.ReadFile(certs.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	peer, err := tls.LoadX509KeyPair(certs.ServerCert, certs.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	handshake := func(certs []tls.Certificate) error {
		conn, err := tls.DialWithDialer(dialer, "tcp", addr, &tls.Config{RootCAs: pool, Certificates: certs, MinVersion: tls.VersionTLS12})
		if err != nil {
			return err
		}
		defer conn.Close()
		// TLS 1.3 reports a refused client certificate at the first read.
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		return err
	}
	if err := handshake([]tls.Certificate{peer}); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("TLS with a node's certificate: %v", err)
	}
	if err := handshake(nil); err == nil {
		t.Errorf("a TLS peer without a certificate was accepted")
	}
	plain, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	_ = plain.SetReadDeadline(time.Now().Add(10 * time.Second))
	if line, err := bufio.NewReader(plain).ReadString('\n'); err == nil && !strings.Contains(line, `"tls_required":true`) {
		t.Errorf("a plain-text route connection was offered plain text: %s", line)
	}
}
