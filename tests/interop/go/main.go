// golang.org/x/oauth2 (clientcredentials) and coreos/go-oidc's RemoteKeySet against Latchkey.
// Prints `RESULT library case PASS|FAIL|SKIP detail`.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"runtime/debug"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

type client struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
}

var (
	issuers = map[string]string{}
	algs    []string
	clients []client
	ctx     context.Context
)

func version(path string) string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, d := range info.Deps {
			if d.Path == path {
				return d.Version
			}
		}
	}
	return "unknown"
}

type skip string

func (s skip) Error() string { return string(s) }

func result(lib, name string, fn func() error) {
	err := fn()
	var s skip
	switch {
	case err == nil:
		fmt.Printf("RESULT %s %s PASS\n", lib, name)
	case errors.As(err, &s):
		fmt.Printf("RESULT %s %s SKIP %s\n", lib, name, s)
	default:
		detail := strings.Join(strings.Fields(err.Error()), " ")
		if len(detail) > 200 {
			detail = detail[:200]
		}
		fmt.Printf("RESULT %s %s FAIL %s\n", lib, name, detail)
	}
}

func token(issuer string, c client, style oauth2.AuthStyle, scopes ...string) (*oauth2.Token, error) {
	base := strings.TrimSuffix(issuer, "/token")
	cfg := clientcredentials.Config{
		ClientID:     c.ID,
		ClientSecret: c.Secret,
		TokenURL:     base + "/oauth2/token",
		AuthStyle:    style,
		Scopes:       scopes,
	}
	return cfg.Token(ctx)
}

func expectError(code string, fn func() error) error {
	err := fn()
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.ErrorCode == code {
		return nil
	}
	return fmt.Errorf("wanted %s, got %v", code, err)
}

func kid(jwt string) string {
	raw, _ := base64.RawURLEncoding.DecodeString(strings.Split(jwt, ".")[0])
	var h struct {
		Kid string `json:"kid"`
	}
	_ = json.Unmarshal(raw, &h)
	return h.Kid
}

func main() {
	for _, p := range strings.Split(os.Getenv("INTEROP_ISSUERS"), ",") {
		alg, iss, _ := strings.Cut(p, "=")
		issuers[alg] = iss
		algs = append(algs, alg)
	}
	if err := json.Unmarshal([]byte(os.Getenv("INTEROP_CLIENTS")), &clients); err != nil {
		panic(err)
	}
	pem, err := os.ReadFile(os.Getenv("INTEROP_CA"))
	if err != nil {
		panic(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	httpClient := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	ctx = oidc.ClientContext(context.WithValue(context.Background(), oauth2.HTTPClient, httpClient), httpClient)

	oauthLib := "x/oauth2-" + version("golang.org/x/oauth2")
	oidcLib := "go-oidc-" + version("github.com/coreos/go-oidc/v3")
	rs := issuers["RS256"]

	result(oauthLib, "discovery", func() error {
		return skip("x/oauth2 has no RFC 8414 discovery and go-oidc discovers OpenID providers only")
	})
	result(oauthLib, "token_basic", func() error {
		for _, c := range clients {
			if _, err := token(rs, c, oauth2.AuthStyleInHeader); err != nil {
				return fmt.Errorf("%s: %w", c.ID, err)
			}
		}
		return nil
	})
	result(oauthLib, "token_post", func() error {
		for _, c := range clients {
			if _, err := token(rs, c, oauth2.AuthStyleInParams); err != nil {
				return fmt.Errorf("%s: %w", c.ID, err)
			}
		}
		return nil
	})
	result(oauthLib, "errors", func() error {
		bad := client{clients[0].ID, "wrong"}
		for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
			if err := expectError("invalid_client", func() error { _, e := token(rs, bad, style); return e }); err != nil {
				return err
			}
		}
		return expectError("invalid_scope", func() error {
			_, e := token(rs, clients[0], oauth2.AuthStyleInParams, "orders:write")
			return e
		})
	})

	verifiers := map[string]*oidc.IDTokenVerifier{}
	for _, alg := range algs {
		base := strings.TrimSuffix(issuers[alg], "/token")
		keys := oidc.NewRemoteKeySet(ctx, base+"/oauth2/jwks")
		verifiers[alg] = oidc.NewVerifier(issuers[alg], keys, &oidc.Config{
			SkipClientIDCheck:    true,
			SupportedSigningAlgs: []string{alg},
		})
	}
	verify := func(alg, jwt string) error {
		t, err := verifiers[alg].Verify(ctx, jwt)
		if err != nil {
			return err
		}
		var claims struct {
			ClientID string `json:"clientId"`
		}
		if err := t.Claims(&claims); err != nil {
			return err
		}
		if claims.ClientID != clients[0].ID {
			return fmt.Errorf("clientId %q", claims.ClientID)
		}
		return nil
	}
	for _, alg := range algs {
		result(oidcLib, "verify_"+alg, func() error {
			t, err := token(issuers[alg], clients[0], oauth2.AuthStyleInParams)
			if err != nil {
				return err
			}
			return verify(alg, t.AccessToken)
		})
	}
	result(oidcLib, "rotation", func() error {
		before, err := token(issuers["ES256"], clients[0], oauth2.AuthStyleInParams)
		if err != nil {
			return err
		}
		if err := verify("ES256", before.AccessToken); err != nil {
			return err
		}
		if out, err := exec.Command(os.Getenv("INTEROP_ROTATE")).CombinedOutput(); err != nil {
			return fmt.Errorf("rotate: %v %s", err, out)
		}
		after, err := token(issuers["ES256"], clients[0], oauth2.AuthStyleInParams)
		if err != nil {
			return err
		}
		if kid(after.AccessToken) == kid(before.AccessToken) {
			return errors.New("same kid after rotation")
		}
		if err := verify("ES256", after.AccessToken); err != nil {
			return err
		}
		return verify("ES256", before.AccessToken)
	})
}
