package status

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// checkRegistry asks the registry's /healthz, which says whether its
// storage can be read; with credentials, /v2/ as well, since a registry
// that refuses the nodes' password is as useless to them as a down one.
func checkRegistry(ctx context.Context, src RegistrySource) Registry {
	if src.URL == "" {
		return Registry{Note: src.Note}
	}
	r := Registry{Enabled: true, Address: src.URL}
	if u, err := url.Parse(src.URL); err == nil && u.Host != "" {
		r.Address = u.Host
	}
	if src.Err != nil {
		r.Error = src.Err.Error()
		return r
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: src.CAs}}}
	defer c.CloseIdleConnections()
	base := strings.TrimSuffix(src.URL, "/")
	if err := get(ctx, c, base+"/healthz", "", ""); err != nil {
		r.Error = err.Error()
		return r
	}
	if src.Username != "" {
		if err := get(ctx, c, base+"/v2/", src.Username, src.Password); err != nil {
			r.Error = err.Error()
			return r
		}
	}
	r.Healthy = true
	return r
}

func get(ctx context.Context, c *http.Client, u, user, pass string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := c.Do(req)
	var ue *url.Error
	if errors.As(err, &ue) {
		// the URL is in the report already
		return fmt.Errorf("%s: %w", req.URL.Path, ue.Err)
	}
	if err != nil {
		return err
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized && user != "":
		return fmt.Errorf("%s: %s: the registry refuses user %s, so nodes cannot pull; re-run perch install to renew the password", req.URL.Path, resp.Status, user)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("%s: %s", req.URL.Path, resp.Status)
	}
	return nil
}
