"""Bad input, one case each: the errno from the syscall, the reason in `error` and the log, no change.

Every case writes with os.open/os.write/os.close (or mkdir), so the errno is
the one the user's syscall gets. After each, every file of every accelerator
and the by-name links are exactly as before.
"""
import errno
import os
import unittest

from harness import MountTest

VM = "11111111-2222-4333-8444-555555555555"

# The example bodies of ../shared/cyborg-api-proposal.rst, taken literally:
# none is valid JSON (a missing comma after "CRYPTO" and after "num":2,
# a trailing comma after "num":1).
PROPOSAL_PUT_BODY = """{
    "acc_specs":{
       "remote":0,
       "num":1,
       "device_type":"CRYPTO"
       "acc_capability":{
          "num":2
          "ipsec":{
             "aes":{
               "3des":50,
               "num":1,
             }
          }
       }
     }
}
"""
PROPOSAL_ACC_SPECS = """{
   "remote":0,
   "num":1,
   "device_type":"CRYPTO"
   "acc_capability":
   {
      "num":2
      "ipsec":
      {
         "aes":
         {
            "3des":50,
            "num":1,
         }
      }
   }
}
"""
PROPOSAL_GET_BODY = """{
   "accelerator":[
    {
      "uuid":"8e45a2ea-5364-4b0d-a252-bf8becaa606e",
      "acc_specs":
      {
         "remote":0,
         "num":1,
         "device_type":"CRYPTO"
         "acc_capability":
         {
            "num":2
         }
       }
     }
   ]
}
"""


class BadInputTest(MountTest):
    def setUp(self):
        super().setUp()
        self.u = self.fake_uuid("GPU")
        self.ok("""echo '{"num": 1}' > accelerators/%s/spec""" % self.u)
        self.before = self.everything()

    def everything(self):
        state = {u: self.snapshot(u) for u in self.uuids()}
        state["by-name"] = sorted(os.listdir(self.fs.path("by-name")))
        return state

    def log_bytes(self):
        with open(self.fs.log_path, "rb") as f:
            return f.read()

    def refused(self, file, data, expected_errno, *phrases, chunk=None):
        """Writes `data` to `file` of the GPU; checks errno, `error`, the log and that nothing changed."""
        path = os.path.join("accelerators", self.u, file)
        got = self.write_file(path, data, chunk=chunk)
        self.assertEqual(got, expected_errno, "%s <- %r: %s" % (file, data[:60], os.strerror(got)))
        with open(self.fs.path("accelerators", self.u, "error"), "rb") as f:
            error = f.read()
        self.assertTrue(error.startswith(file.encode() + b": "), error)
        for phrase in phrases:
            self.assertIn(phrase.encode(), error)
        self.assertIn(b"refused: " + error.rstrip(b"\n"), self.log_bytes())
        self.assertEqual(self.everything(), self.before)
        return error.decode(errors="replace")

    def refused_without_accelerator(self, action, expected_errno, log_phrase=None):
        """A refusal that concerns no accelerator: errno and a log line, nothing changed."""
        self.assertEqual(self.errno_of(action), expected_errno)
        if log_phrase:
            self.assertIn(log_phrase.encode(), self.log_bytes())
        self.assertEqual(self.everything(), self.before)


class SpecInputTest(BadInputTest):
    def test_the_proposal_examples_taken_literally(self):
        self.refused("spec", PROPOSAL_PUT_BODY, errno.EINVAL, "line 6, column", "expected '}'")
        self.refused("spec", PROPOSAL_ACC_SPECS, errno.EINVAL, "line 5, column", "expected '}'")
        self.refused("spec", PROPOSAL_GET_BODY, errno.EINVAL, "line 10, column", "expected '}'")

    def test_the_put_body_made_valid_is_still_not_a_spec(self):
        self.refused("spec", '{"acc_specs": {"num": 1}}', errno.EINVAL, 'the value of "acc_specs"')

    def test_json_that_is_not_an_object(self):
        for text, kind in [("[1, 2]", "array"), ('"GPU"', "string"), ("42", "number"), ("null", "null")]:
            self.refused("spec", text, errno.EINVAL, "must be a JSON object, not " + kind)

    def test_wrong_field_types(self):
        for text, reason in [('{"num": "1"}', '"num" must be a positive integer, not "1"'),
                             ('{"remote": true}', '"remote" must be 0 or 1, not true'),
                             ('{"device_type": 5}', '"device_type" must be a non-empty string, not 5'),
                             ('{"acc_capability": []}', '"acc_capability" must be an object, not []'),
                             ('{"num": 1.5}', '"num" must be a positive integer, not 1.5'),
                             ('{"remote": "0"}', '"remote" must be 0 or 1, not "0"'),
                             ('{"num": 1} trailing', "line 1, column 14")]:
            self.refused("spec", text, errno.EINVAL, reason)

    def test_two_documents(self):
        self.refused("spec", "{}{}", errno.EINVAL, "line 1, column 3", "expected end of input")

    def test_nesting_100000_levels_deep(self):
        # In stdio's 4 KiB pieces the depth bound refuses the first piece; in one
        # write the size bound comes first. Neither builds the tree.
        self.refused("spec", "[" * 100000, errno.EINVAL, "nesting deeper than 32 levels", chunk=4096)
        self.refused("spec", '{"a":' * 100000, errno.EINVAL, "nesting deeper than 32 levels", chunk=4096)
        self.refused("spec", "[" * 100000, errno.EFBIG, "document over 65536 bytes")

    def test_10_mb(self):
        data = '{"blob": "%s"}' % ("x" * 10 * 1024 * 1024)
        self.refused("spec", data, errno.EFBIG, "document over 65536 bytes")

    def test_nul_bytes(self):
        self.refused("spec", b'{"num": 1\0}', errno.EINVAL, "line 1, column 10")
        self.refused("spec", b'{"a": "\0"}', errno.EINVAL, "line 1, column 8", "control character")

    def test_nul_bytes_after_the_document(self):
        self.refused("spec", b'{"a":1}\0\0', errno.EINVAL, "line 1, column 8: a NUL byte")
        self.refused("spec", b'{"a":1}\n\0', errno.EINVAL, "line 2, column 1: a NUL byte")

    def test_nul_bytes_in_a_renamed_value(self):
        folder = self.fs.path("accelerators", self.u)
        with open(os.path.join(folder, "tmp"), "wb") as f:
            f.write(b'{"a":1}\0')
        self.assertEqual(self.errno_of(lambda: os.rename(os.path.join(folder, "tmp"), os.path.join(folder, "spec"))),
                         errno.EINVAL)
        self.assertIn("spec (renamed from tmp): line 1, column 8: a NUL byte", self.acc(self.u, "error"))
        os.unlink(os.path.join(folder, "tmp"))
        self.assertEqual(self.everything(), self.before)

    def test_invalid_utf8(self):
        self.refused("spec", b'{"a": "\xff"}', errno.EINVAL, "line 1, column 8", "UTF-8")

    def test_whitespace_only(self):
        for text in ["\n", "   \n", "\t \r\n"]:
            self.refused("spec", text, errno.EINVAL, "empty or only whitespace")

    def test_an_empty_write_changes_nothing(self):
        # write(2) of 0 bytes never reaches the daemon (the kernel returns 0), and
        # an open with O_TRUNC alone is not "set to empty": nothing to refuse.
        self.assertEqual(self.write_file(os.path.join("accelerators", self.u, "spec"), b""), 0)
        self.ok("printf '' > accelerators/%s/spec" % self.u)
        self.assertEqual(self.everything(), self.before)


class AttachInputTest(BadInputTest):
    def test_bad_targets(self):
        for text, reason in [("vm not-a-uuid\n", '"not-a-uuid" is not an instance uuid'),
                             ("vm\n", 'expected "vm <instance-uuid>", "host <hostname>" or an empty line'),
                             ("lxc %s\n" % VM, 'got "lxc %s"' % VM),
                             ("host bad_name!\n", '"bad_name!" is not a host name'),
                             ("vm %s extra\n" % VM, 'got "vm %s extra"' % VM),
                             ("vm %s\nvm %s\n" % (VM, VM), "expected one line")]:
            self.refused("attach", text, errno.EINVAL, reason)

    def test_a_10_kb_line(self):
        self.refused("attach", "vm " + "a" * 10240 + "\n", errno.EFBIG, "at most 4096 are allowed")


class NameInputTest(BadInputTest):
    def test_bad_names(self):
        for text, reason in [("\n", "must not be empty"), ("/\n", "must not contain '/'"),
                             ("..\n", 'must not be "." or ".."'), ("n" * 300 + "\n", "is 300 bytes, at most 255"),
                             ("two\nlines\n", "must not contain a newline"), ("nul\0byte", "must not contain a NUL"),
                             ("padded\0\0", "must not contain a NUL")]:
            self.refused("name", text, errno.EINVAL, reason)
        # Names appear in the audit trail's JSON strings and in listings: UTF-8 only.
        self.refused("name", b"bad\xff\n", errno.EINVAL, "is not UTF-8 (byte 3")

    def test_255_bytes_is_the_longest_name(self):
        self.assertEqual(self.write_file(os.path.join("accelerators", self.u, "name"), "n" * 255), 0)
        self.assertEqual(self.acc(self.u, "name"), "n" * 255)


class CreateInputTest(BadInputTest):
    def test_mkdir_of_bad_and_existing_uuids(self):
        for bad in ["not-a-uuid", self.u.upper(), self.u.replace("-", "")]:
            self.refused_without_accelerator(lambda: os.mkdir(self.fs.path("accelerators", bad)), errno.EINVAL,
                                             'accelerator="%s" file="mkdir" error="\\"%s\\" is not a lowercase'
                                             % (bad, bad))  # the audit line
        # The kernel finds the existing folder and answers EEXIST itself.
        self.refused_without_accelerator(lambda: os.mkdir(self.fs.path("accelerators", self.u)), errno.EEXIST)

    def test_bad_create_bodies(self):
        for body, reason in [('{"uuid": "%s"}' % VM, '"name" is required'),
                             ('{"name": "x", "extra": 1}', 'unknown key "extra" (allowed: name, uuid)'),
                             ('{"name": "x", "uuid": "8e45a2ea-5364"}', '"uuid" must be a uuid, not "8e45a2ea-5364"'),
                             ("name=x\n", "line 1, column 2: invalid literal"),
                             ('{"name": "x",}', "line 1, column 14"),
                             ("[]", "must be a JSON object, not array"), ('{"name": 5}', '"name" must be a string'),
                             ('{"name": ""}', '"name": must not be empty'),
                             ('{"name": "a/b"}', '"name": must not contain \'/\''),
                             ('{"name": "x", "name": "y"}', 'the key "name" is given twice'),
                             ('{"name": "x"}\0\0', "line 1, column 14: a NUL byte")]:
            self.refused_without_accelerator(lambda: self.check_write("create", body), errno.EINVAL,
                                             "refused: create: " + reason)

    def check_write(self, path, data):
        got = self.write_file(path, data)
        if got:
            raise OSError(got, os.strerror(got))


if __name__ == "__main__":
    unittest.main()
