fn main() {
    lro_worker::cli::main(lro_worker::Kinds::builtin());
}
