package runtime

// KickConnection makes the embedded server close the runtime's own client
// connection, as it does to a slow consumer.
func KickConnection(r *Runtime) error {
	cid, err := r.nc.GetClientID()
	if err != nil {
		return err
	}
	return r.srv.DisconnectClientByID(cid)
}

// Reconnects is how many times the runtime's connection reconnected.
func Reconnects(r *Runtime) uint64 { return r.nc.Stats().Reconnects }

// PublishUnchecked publishes on the runtime's own connection without the
// subject checks every real send goes through.
func PublishUnchecked(r *Runtime, subject string) error { return r.nc.Publish(subject, nil) }
