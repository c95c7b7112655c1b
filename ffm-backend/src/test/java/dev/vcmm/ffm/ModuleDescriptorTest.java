package dev.vcmm.ffm;

import dev.vcmm.spi.HostMapper;
import dev.vcmm.spi.MemoryBackend;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.io.InputStream;
import java.lang.module.Configuration;
import java.lang.module.ModuleDescriptor;
import java.lang.module.ModuleFinder;
import java.lang.module.ModuleReader;
import java.lang.module.ModuleReference;
import java.net.URISyntaxException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.ServiceLoader;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The module descriptors of the two library modules, read from the classes the build made, and a module
 * layer built from them. The tests themselves run on the class path (see the parent pom), so this is where
 * the suite checks what a user on the module path gets: the exported packages, the services, and that
 * service binding finds the FFM backend when only the core is asked for. examples/consumer (run by
 * ./vcmm test) does the same for real, with the installed jars and a java launcher.
 */
class ModuleDescriptorTest {

    private static final String CORE = "dev.vcmm.core";
    private static final String FFM = "dev.vcmm.ffm";

    /** The jar or classes directory {@code type} was loaded from. */
    private static Path locationOf(Class<?> type) {
        try {
            return Path.of(type.getProtectionDomain().getCodeSource().getLocation().toURI());
        } catch (URISyntaxException e) {
            throw new AssertionError(e);
        }
    }

    private static ModuleReference module(Class<?> inModule, String name) {
        Path location = locationOf(inModule);
        return ModuleFinder.of(location).find(name)
            .orElseThrow(() -> new AssertionError("no module " + name + " at " + location));
    }

    private static Set<String> exports(ModuleDescriptor d) {
        assertTrue(d.exports().stream().noneMatch(ModuleDescriptor.Exports::isQualified), d.exports()::toString);
        return d.exports().stream().map(ModuleDescriptor.Exports::source).collect(Collectors.toCollection(TreeSet::new));
    }

    private static Map<String, List<String>> provides(ModuleDescriptor d) {
        return d.provides().stream().collect(Collectors.toMap(ModuleDescriptor.Provides::service,
            ModuleDescriptor.Provides::providers, (a, b) -> a, TreeMap::new));
    }

    @Test
    void shouldExportTheCoreApiAndUseBothServices() {
        ModuleDescriptor core = module(MemoryBackend.class, CORE).descriptor();

        assertEquals(Set.of("dev.vcmm", "dev.vcmm.heap", "dev.vcmm.pagetable", "dev.vcmm.space", "dev.vcmm.spi"),
            exports(core));
        assertEquals(Set.of(MemoryBackend.class.getName(), HostMapper.class.getName()), core.uses());
        assertEquals(Set.of("java.base", "jdk.jfr"), core.requires().stream().map(ModuleDescriptor.Requires::name)
            .collect(Collectors.toSet()), "the core needs nothing but the JDK's base module and JFR (the device-fault event)");
        assertTrue(core.opens().isEmpty() && !core.isOpen(), "nothing is open to reflection");
    }

    @Test
    void shouldExportOnlyTheFfmPackageAndProvideBothServices() throws IOException {
        ModuleReference ffm = module(FfmMemoryBackend.class, FFM);
        ModuleDescriptor d = ffm.descriptor();

        assertEquals(Set.of(FFM), exports(d));
        assertTrue(d.requires().stream().anyMatch(r -> r.name().equals(CORE)
            && r.modifiers().contains(ModuleDescriptor.Requires.Modifier.TRANSITIVE)),
            "requires transitive dev.vcmm.core, whose types its API uses: " + d.requires());
        Map<String, List<String>> expected = new TreeMap<>(Map.of(
            MemoryBackend.class.getName(), List.of(FfmMemoryBackend.class.getName()),
            HostMapper.class.getName(), List.of(MmapHostMapper.class.getName())));
        assertEquals(expected, provides(d));

        // class-path users find the same providers through META-INF/services
        Map<String, List<String>> services = new TreeMap<>();
        try (ModuleReader reader = ffm.open()) {
            for (String service : expected.keySet()) {
                try (InputStream in = reader.open("META-INF/services/" + service).orElseThrow()) {
                    services.put(service, new String(in.readAllBytes(), StandardCharsets.UTF_8).lines()
                        .map(String::strip).filter(l -> !l.isEmpty() && !l.startsWith("#")).toList());
                }
            }
        }
        assertEquals(expected, services);
    }

    @Test
    void shouldBindTheFfmBackendWhenOnlyTheCoreIsResolved() throws ReflectiveOperationException {
        ModuleFinder finder = ModuleFinder.of(locationOf(MemoryBackend.class), locationOf(FfmMemoryBackend.class));
        Configuration cf = ModuleLayer.boot().configuration().resolveAndBind(finder, ModuleFinder.of(), Set.of(CORE));
        assertTrue(cf.findModule(FFM).isPresent(), "service binding resolves the provider module");

        ModuleLayer layer = ModuleLayer.boot().defineModulesWithOneLoader(cf, ClassLoader.getPlatformClassLoader());
        Class<?> service = layer.findLoader(CORE).loadClass(MemoryBackend.class.getName());
        List<? extends ServiceLoader.Provider<?>> providers = ServiceLoader.load(layer, service).stream().toList();

        assertEquals(List.of(FfmMemoryBackend.class.getName()), providers.stream().map(p -> p.type().getName()).toList());
        Object backend = providers.getFirst().get();
        assertEquals(FFM, backend.getClass().getModule().getName());
        assertEquals(FfmMemoryBackend.NAME, service.getMethod("name").invoke(backend));
    }
}
