nats {
  cluster {
    name     = "prod"
    listen   = "0.0.0.0:6222"
    routes   = ["nats://10.0.0.2:6222", "http://10.0.0.3:6222", "nats://u:p@10.0.0.4:6222", "nats://10.0.0.5"]
    password = "x"
  }
}
