import com.nimbusds.jose.jwk.*;
public class T { public static void main(String[] a) throws Exception {
  JWKSet s = JWKSet.parse(new String(java.nio.file.Files.readAllBytes(java.nio.file.Path.of("jwks.json"))));
  System.out.println(s.getKeys().size());
  for (JWK k : s.getKeys()) { System.out.println(k.getKeyType()+" "+k.getAlgorithm()+" "+((OctetKeyPair)k).getCurve()); }
  var m = JWKMatcher.forJWSHeader(new com.nimbusds.jose.JWSHeader.Builder(com.nimbusds.jose.JWSAlgorithm.EdDSA).keyID(s.getKeys().get(0).getKeyID()).build());
  System.out.println(new JWKSelector(m).select(s).size());
}}
