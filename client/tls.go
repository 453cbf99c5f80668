package client

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// tlsConfig builds the TLS configuration of the options: nil for plain
// http. Files are read once, here.
func (o *Options) tlsConfig() (*tls.Config, error) {
	if o.TLSConfig == nil && o.CAFile == "" && o.CertFile == "" && o.KeyFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{}
	if o.TLSConfig != nil {
		cfg = o.TLSConfig.Clone()
	}
	if cfg.MinVersion < tls.VersionTLS12 {
		cfg.MinVersion = tls.VersionTLS12
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kmb client: Options.CAFile: %w", err)
		}
		pool := cfg.RootCAs
		if pool == nil {
			pool = x509.NewCertPool()
		} else {
			pool = pool.Clone()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kmb client: Options.CAFile %s: no PEM certificate in it", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case (o.CertFile == "") != (o.KeyFile == ""):
		return nil, errors.New("kmb client: Options.CertFile and Options.KeyFile go together: set both or neither")
	case o.CertFile != "":
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kmb client: Options.CertFile %s and KeyFile %s: %w", o.CertFile, o.KeyFile, err)
		}
		cfg.Certificates = append(cfg.Certificates, cert)
	}
	return cfg, nil
}
