/**
 * A program that uses vcmm as a library, on the module path. It requires only the core: the
 * {@code dev.vcmm.ffm} module, on the module path too, is bound as the provider of the core's
 * {@code MemoryBackend} service without being named here.
 */
module dev.vcmm.example.consumer {
    requires dev.vcmm.core;
}
