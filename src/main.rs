//! The `rookery` command-line server.

fn main() {
    env_logger::init();
    let config = rookery::Config {
        path: "/".into(),
        max_message: 64 << 20,
        max_backlog: 128 << 20,
        ..rookery::Config::default()
    };
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".into());
    let mut server = rookery::Server::bind(addr, config, rookery::echo::Echo).expect("bind");
    println!("listening on {}", server.local_addr());
    server.run().expect("run");
}
