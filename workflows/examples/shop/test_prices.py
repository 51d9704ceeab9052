import unittest

from prices import stamped, total


class Prices(unittest.TestCase):
    def test_total(self):
        self.assertEqual(total([1.5, 2.5]), 4.0)

    def test_stamped(self):
        self.assertTrue(stamped(2).endswith(" 2.00"))


if __name__ == "__main__":
    unittest.main()
