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
