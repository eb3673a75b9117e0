// Nimbus OAuth 2.0 SDK and Nimbus JOSE+JWT against Latchkey.
// Prints `RESULT library case PASS|FAIL|SKIP detail`.

import com.nimbusds.jose.JWSAlgorithm;
import com.nimbusds.jose.crypto.Ed25519Verifier;
import com.nimbusds.jose.jwk.JWK;
import com.nimbusds.jose.jwk.JWKMatcher;
import com.nimbusds.jose.jwk.JWKSelector;
import com.nimbusds.jose.jwk.source.JWKSource;
import com.nimbusds.jose.jwk.source.JWKSourceBuilder;
import com.nimbusds.jose.proc.JWSVerificationKeySelector;
import com.nimbusds.jose.proc.SecurityContext;
import com.nimbusds.jwt.JWTClaimsSet;
import com.nimbusds.jwt.SignedJWT;
import com.nimbusds.jwt.proc.DefaultJWTClaimsVerifier;
import com.nimbusds.jwt.proc.DefaultJWTProcessor;
import com.nimbusds.oauth2.sdk.ClientCredentialsGrant;
import com.nimbusds.oauth2.sdk.Scope;
import com.nimbusds.oauth2.sdk.TokenRequest;
import com.nimbusds.oauth2.sdk.TokenResponse;
import com.nimbusds.oauth2.sdk.as.AuthorizationServerMetadata;
import com.nimbusds.oauth2.sdk.auth.ClientAuthentication;
import com.nimbusds.oauth2.sdk.auth.ClientSecretBasic;
import com.nimbusds.oauth2.sdk.auth.ClientSecretPost;
import com.nimbusds.oauth2.sdk.auth.Secret;
import com.nimbusds.oauth2.sdk.id.ClientID;
import com.nimbusds.oauth2.sdk.id.Issuer;
import java.net.URL;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

public class Interop {
    interface Case { void run() throws Exception; }

    static void result(String lib, String name, Case c) {
        try {
            c.run();
            System.out.println("RESULT " + lib + " " + name + " PASS");
        } catch (Throwable e) {
            String d = (e.getClass().getSimpleName() + ": " + e.getMessage()).replaceAll("\\s+", " ");
            System.out.println("RESULT " + lib + " " + name + " FAIL " + d.substring(0, Math.min(200, d.length())));
        }
    }

    record Client(String id, String secret) {}

    static final Map<String, String> ISSUERS = new LinkedHashMap<>();
    static final List<Client> CLIENTS = new ArrayList<>();
    static final Map<String, AuthorizationServerMetadata> META = new LinkedHashMap<>();

    static TokenResponse token(AuthorizationServerMetadata m, Client c, boolean basic, String scope) throws Exception {
        ClientAuthentication auth = basic
            ? new ClientSecretBasic(new ClientID(c.id()), new Secret(c.secret()))
            : new ClientSecretPost(new ClientID(c.id()), new Secret(c.secret()));
        TokenRequest req = new TokenRequest(m.getTokenEndpointURI(), auth, new ClientCredentialsGrant(),
            scope == null ? null : Scope.parse(scope));
        return TokenResponse.parse(req.toHTTPRequest().send());
    }

    static String accessToken(AuthorizationServerMetadata m, Client c) throws Exception {
        TokenResponse r = token(m, c, false, null);
        if (!r.indicatesSuccess()) throw new AssertionError(r.toErrorResponse().getErrorObject().toJSONObject());
        return r.toSuccessResponse().getTokens().getAccessToken().getValue();
    }

    static void expectError(String code, TokenResponse r) {
        if (r.indicatesSuccess()) throw new AssertionError("no error, wanted " + code);
        String got = r.toErrorResponse().getErrorObject().getCode();
        if (!code.equals(got)) throw new AssertionError("error " + got + ", wanted " + code);
    }

    public static void main(String[] args) throws Exception {
        for (String p : System.getenv("INTEROP_ISSUERS").split(",")) {
            String[] kv = p.split("=", 2);
            ISSUERS.put(kv[0], kv[1]);
        }
        // The client list is flat JSON of id/secret pairs; Nimbus' own JSON parser reads it.
        for (Object o : com.nimbusds.jose.util.JSONArrayUtils.parse(System.getenv("INTEROP_CLIENTS"))) {
            @SuppressWarnings("unchecked") Map<String, Object> m = (Map<String, Object>) o;
            CLIENTS.add(new Client((String) m.get("id"), (String) m.get("secret")));
        }
        String oauthLib = "nimbus-oauth2-oidc-sdk-" + pkgVersion(AuthorizationServerMetadata.class);
        String joseLib = "nimbus-jose-jwt-" + pkgVersion(SignedJWT.class);

        // RFC 8414 discovery from the issuer identifier; Nimbus checks the returned issuer.
        result(oauthLib, "discovery", () -> {
            for (var e : ISSUERS.entrySet()) {
                META.put(e.getKey(), AuthorizationServerMetadata.resolve(new Issuer(e.getValue())));
            }
        });
        if (META.isEmpty()) return;
        AuthorizationServerMetadata rs = META.get("RS256");

        result(oauthLib, "token_basic", () -> {
            for (Client c : CLIENTS) {
                TokenResponse r = token(rs, c, true, null);
                if (!r.indicatesSuccess()) throw new AssertionError(c.id() + ": " + r.toErrorResponse().getErrorObject().toJSONObject());
            }
        });
        result(oauthLib, "token_post", () -> {
            for (Client c : CLIENTS) accessToken(rs, c);
        });
        result(oauthLib, "errors", () -> {
            Client bad = new Client(CLIENTS.get(0).id(), "wrong");
            expectError("invalid_client", token(rs, bad, true, null));
            expectError("invalid_client", token(rs, bad, false, null));
            expectError("invalid_scope", token(rs, CLIENTS.get(0), false, "orders:write"));
        });

        for (var e : META.entrySet()) {
            JWKSource<SecurityContext> keys = JWKSourceBuilder
                .create(e.getValue().getJWKSetURI().toURL())
                .rateLimited(false)
                .build();
            DefaultJWTProcessor<SecurityContext> p = new DefaultJWTProcessor<>();
            p.setJWSKeySelector(new JWSVerificationKeySelector<>(JWSAlgorithm.parse(e.getKey()), keys));
            p.setJWTClaimsSetVerifier(claimsVerifier(e.getKey()));
            processors.put(e.getKey(), p);
            SOURCES.put(e.getKey(), keys);
        }
        for (String alg : ISSUERS.keySet()) {
            result(joseLib, "verify_" + alg, () -> verify(processors, alg, accessToken(META.get(alg), CLIENTS.get(0))));
        }
        result(joseLib, "rotation", () -> {
            String before = accessToken(META.get("ES256"), CLIENTS.get(0));
            verify(processors, "ES256", before);
            Process p = new ProcessBuilder(System.getenv("INTEROP_ROTATE")).inheritIO().start();
            if (p.waitFor() != 0) throw new AssertionError("rotate failed");
            String after = accessToken(META.get("ES256"), CLIENTS.get(0));
            if (SignedJWT.parse(after).getHeader().getKeyID().equals(SignedJWT.parse(before).getHeader().getKeyID())) {
                throw new AssertionError("same kid after rotation");
            }
            verify(processors, "ES256", after);
            verify(processors, "ES256", before);
        });
    }

    static final Map<String, DefaultJWTProcessor<SecurityContext>> processors = new LinkedHashMap<>();
    static final Map<String, JWKSource<SecurityContext>> SOURCES = new LinkedHashMap<>();

    static DefaultJWTClaimsVerifier<SecurityContext> claimsVerifier(String alg) {
        return new DefaultJWTClaimsVerifier<>(
            new JWTClaimsSet.Builder().issuer(ISSUERS.get(alg)).build(),
            Set.of("exp", "iat", "sub", "jti"));
    }

    static void verify(Map<String, DefaultJWTProcessor<SecurityContext>> processors, String alg, String jwt) throws Exception {
        JWTClaimsSet claims;
        if (alg.equals("EdDSA")) {
            // DefaultJWTProcessor's key selector hands out java.security keys, which Nimbus
            // does not make of OKP JWKs; Ed25519 goes through Tink's verifier, with the key
            // from the same remote JWK source (cache, refetch on an unknown kid).
            SignedJWT signed = SignedJWT.parse(jwt);
            List<JWK> keys = SOURCES.get(alg).get(new JWKSelector(JWKMatcher.forJWSHeader(signed.getHeader())), null);
            if (keys.isEmpty()) throw new AssertionError("no key for kid " + signed.getHeader().getKeyID());
            if (!signed.verify(new Ed25519Verifier(keys.get(0).toOctetKeyPair()))) throw new AssertionError("bad signature");
            claims = signed.getJWTClaimsSet();
            claimsVerifier(alg).verify(claims, null);
        } else {
            claims = processors.get(alg).process(jwt, null);
        }
        if (!CLIENTS.get(0).id().equals(claims.getStringClaim("clientId"))) throw new AssertionError(claims.toString());
    }

    /** The library's version, from the jar name on the class path. */
    static String pkgVersion(Class<?> c) {
        String v = c.getPackage().getImplementationVersion();
        if (v != null) return v;
        URL where = c.getProtectionDomain().getCodeSource().getLocation();
        Matcher m = Pattern.compile("-([0-9][^/]*)\\.jar$").matcher(where.getPath());
        return m.find() ? m.group(1) : "unknown";
    }
}
