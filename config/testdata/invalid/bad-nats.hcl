nats {
  listen    = "localhost"
  url       = "nats://a:4222,http://b:4222"
  sync      = "sometimes"
  store_dir = ""
}

metrics {
  listen = "127.0.0.1:99999"
}
