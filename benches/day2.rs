fn main() {
    eprintln!("day2 benchmark: not written yet");
}
