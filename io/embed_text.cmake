# Writes a C++ source that defines one string constant holding a text file, so the `duet`
# binary carries its default config and works from any directory.
#   cmake -DINPUT=<file> -DOUTPUT=<file.cpp> -DSYMBOL=<name in duet::io::detail> -P embed_text.cmake
file(READ "${INPUT}" text)
set(delim "duet_embedded")
string(FIND "${text}" ")${delim}\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains ')${delim}\"', which would end the raw string early")
endif()
string(CONCAT source "// Generated from ${INPUT} by io/embed_text.cmake; do not edit.\n"
       "namespace duet::io::detail {\n"
       "extern const char ${SYMBOL}[];\n"
       "const char ${SYMBOL}[] = R\"${delim}(${text})${delim}\";\n"
       "}  // namespace duet::io::detail\n")
file(WRITE "${OUTPUT}" "${source}")
