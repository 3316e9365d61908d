# workerd serving handler.mjs; benches/compare.sh picks the port with --socket-addr.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [ (name = "main", worker = .handler) ],
  sockets = [ (name = "http", address = "127.0.0.1:8083", http = (), service = "main") ],
);

const handler :Workerd.Worker = (
  modules = [ (name = "handler.mjs", esModule = embed "handler.mjs") ],
  compatibilityDate = "2024-09-23",
);
