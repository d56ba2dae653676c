/** Version of this SDK, sent in Hello.sdk_version (kept equal to package.json by a test). */
export const SDK_VERSION = "0.1.0";

/** Language tag sent in Hello.sdk_language. */
export const SDK_LANGUAGE = "node";
